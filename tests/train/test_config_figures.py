"""``train.figures``: the switch that keeps a run's own figures out of its folder."""
import os

import pytest

from jaxmm.methods import get_method
from jaxmm.train.config import RunConfig, TrainConfig, apply_overrides, from_dict, to_dict
from jaxmm.train.loop import fit

from ._tiny import MODEL, OPT, tiny_splits, train_cfg

FIGURES = ("curves.png", "modalities.png", "method_logs.png")


def test_figures_default_on_and_set_from_the_command_line():
    assert TrainConfig().figures is True
    assert apply_overrides(RunConfig(), ["train.figures=False"]).train.figures is False
    assert apply_overrides(RunConfig(), ["train.figures=True"]).train.figures is True


def test_figures_round_trip_and_configs_without_the_field_keep_the_default():
    cfg = apply_overrides(RunConfig(), ["train.figures=False"])
    assert to_dict(cfg)["train"]["figures"] is False
    assert from_dict(RunConfig, to_dict(cfg)).train.figures is False
    old = to_dict(RunConfig())
    del old["train"]["figures"]  # a config.json written before the field existed
    assert from_dict(RunConfig, old).train.figures is True


@pytest.mark.parametrize("value", ["no", 0, 1, None])
def test_figures_must_be_a_bool(value):
    with pytest.raises(ValueError, match=r"^train.figures must be true or false, got "):
        TrainConfig(figures=value)


def test_a_run_without_figures_keeps_its_records(tmp_path):
    run = tmp_path / "run"
    fit(get_method("vanilla"), [tiny_splits()], [0], MODEL, OPT, train_cfg(epochs=1, figures=False, tensorboard=False),
        run_dir=str(run))
    files = set(os.listdir(run))
    assert {"metrics.jsonl", "results.json"} <= files
    assert not files & set(FIGURES)
