"""jaxmm.train.sweep: parsing, the cartesian product with the seeds, and which values share a program."""
import pytest

from jaxmm.train.config import RunConfig
from jaxmm.train.sweep import parse_sweep, point_label, programs


def test_parse_sweep_keeps_commas_inside_brackets():
    assert parse_sweep("hparams.lam=0.1,1,10") == ("hparams.lam", [0.1, 1, 10])
    assert parse_sweep("model.encoder_hidden=(16, 8),(32,)") == ("model.encoder_hidden", [(16, 8), (32,)])
    with pytest.raises(ValueError, match="key.path=v1,v2"):
        parse_sweep("hparams.lam")
    with pytest.raises(ValueError, match="empty value"):
        parse_sweep("hparams.lam=1,,2")


def test_vmappable_values_share_one_program_with_every_seed():
    cfg = RunConfig(seeds=(0, 1), hparams={"lam_uni": 0.5})
    (program,) = programs(cfg, {"hparams.lam": [0.1, 10], "optimizer.lr": [1e-3, 3e-4]})
    assert program.tag == "" and program.overrides == ()
    assert program.seeds == (0, 1) * 4
    assert program.hparams[0] == {"lam_uni": 0.5, "lam": 0.1, "lr": 1e-3}
    assert program.hparams[-1] == {"lam_uni": 0.5, "lam": 10.0, "lr": 3e-4}
    assert len({point_label(p) for p in program.points}) == 4


def test_static_values_get_a_program_each():
    out = programs(RunConfig(seeds=(3,)), {"method_options.mask": ["random", "oracle"], "hparams.lam": [1, 10]})
    assert [p.tag for p in out] == ["method_options.mask=random", "method_options.mask=oracle"]
    assert out[1].overrides == ("method_options.mask='oracle'",)
    assert [h["lam"] for h in out[0].hparams] == [1.0, 10.0] and out[0].seeds == (3, 3)


def test_unswept_config_is_one_program_and_bad_values_are_refused():
    (program,) = programs(RunConfig(seeds=(0, 1)), {})
    assert program.seeds == (0, 1) and program.points == ({}, {}) and point_label({}) == "-"
    with pytest.raises(ValueError, match='field "optimizer.lr" - should be "float"'):
        programs(RunConfig(), {"optimizer.lr": ["fast"]})
    with pytest.raises(ValueError, match="has no values"):
        programs(RunConfig(), {"hparams.lam": []})
