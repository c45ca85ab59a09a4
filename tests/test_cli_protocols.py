"""`jaxmm train --protocol`: the protocol's per-method settings follow the method and options asked for."""
import pytest

from jaxmm.cli import _new_config, build_parser


def _config(*argv):
    return _new_config(build_parser().parse_args(["train", *argv]))


def test_protocol_names_the_dataset_and_applies_the_learned_mask_flags():
    cfg = _config("--protocol", "mustard_synib", "--method", "synib", "--set", "method_options.mask=learned")
    assert cfg.dataset == "multibench" and cfg.modalities == ("vision", "text")
    assert cfg.method_options["mask"] == "learned"
    assert cfg.hparams == {"lam": 1.0, "lam_sp": 10.0} and cfg.optimizer.lr == 1e-4
    random = _config("--protocol", "mustard_synib", "--method", "synib")
    assert random.hparams == {"lam": 0.001, "p": 0.1} and random.optimizer.lr == 5e-4


def test_set_after_the_protocol_still_wins():
    cfg = _config("--protocol", "mustard_synib", "--method", "synib", "--set", "hparams.lam=2.0",
                  "--set", "optimizer.lr=3e-4")
    assert cfg.hparams["lam"] == 2.0 and cfg.optimizer.lr == 3e-4


def test_a_protocol_without_a_dataset_still_needs_one():
    with pytest.raises(ValueError, match="--dataset is required"):
        _config("--protocol", "crema_d", "--method", "vanilla")


def test_btw_protocol_turns_off_the_extra_layer_norm_and_refreshes_every_5_epochs():
    cfg = _config("--protocol", "mosi_btw", "--method", "btw")
    assert cfg.method_options == {"normalize": False, "refresh_every": 5}
    assert cfg.model.fusion == "moe" and cfg.model.projection == 128 and cfg.optimizer.clip_norm == 0.8
