import pytest

from jaxmm.train.config import RunConfig, TrainConfig, apply_overrides, parse_value


def test_overrides_set_nested_fields_and_dicts():
    cfg = apply_overrides(RunConfig(), ["optimizer.lr=3e-4", "train.epochs=5", "method_options.mask=learned",
                                        "model.encoder_hidden=(32, 16)", "hparams.lam=1", "optimizer.weight_decay=0"])
    assert cfg.optimizer.lr == 3e-4 and cfg.train.epochs == 5
    assert cfg.method_options == {"mask": "learned"} and cfg.hparams == {"lam": 1}
    assert cfg.model.encoder_hidden == (32, 16)
    assert isinstance(cfg.optimizer.weight_decay, float)


def test_bad_overrides():
    with pytest.raises(ValueError, match="valid"):
        apply_overrides(RunConfig(), ["optimizer.learning_rate=1"])
    with pytest.raises(ValueError, match="key.path=value"):
        apply_overrides(RunConfig(), ["optimizer.lr"])
    with pytest.raises(ValueError, match="select"):
        apply_overrides(RunConfig(), ["train.select=median"])
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)


def test_parse_value():
    assert parse_value("1e-3") == 1e-3 and parse_value("abc") == "abc" and parse_value("(1, 2)") == (1, 2)
