"""jaxmm.train.runs: a RunConfig's sweep trained as programs, swept dataset options as per-run data."""
import json

import numpy as np
import pytest
from _tiny import MODEL, OPT, train_cfg

from jaxmm.data.synthetic import imbalance
from jaxmm.methods import get_method
from jaxmm.train.config import RunConfig
from jaxmm.train.runs import run

SIZES = {"train": 32, "val": 16, "test": 16}


def tiny_config(**fields) -> RunConfig:
    return RunConfig(**{"name": "r", "method": "vanilla", "dataset": "imbalance", "dataset_options": {"sizes": SIZES},
                        "seeds": (0, 1), "model": MODEL, "optimizer": OPT, "train": train_cfg(epochs=1), **fields})


def test_swept_dataset_options_are_per_run_data_of_one_program(tmp_path):
    cfg = tiny_config(sweep={"dataset_options.weak_blank": [0.0, 0.5], "hparams.lam_uni": [1.0]})
    (program,) = run(cfg, str(tmp_path / "r"))
    assert program.tag == "" and program.seeds == (0, 1, 0, 1)
    assert [p["dataset_options.weak_blank"] for p in program.points] == [0.0, 0.0, 0.5, 0.5]
    assert len(program.fit.test) == 4 and list(program.grid().values()) == [[0, 1], [2, 3]]
    for split, point, seed in zip(program.splits, program.points, program.seeds):  # each run got its own data
        want = imbalance.splits(seed, imbalance.ImbalanceConfig(weak_blank=point["dataset_options.weak_blank"]),
                                SIZES)
        np.testing.assert_array_equal(split.train.inputs["weak"], want.train.inputs["weak"])
    assert not np.array_equal(program.splits[0].train.inputs["weak"], program.splits[2].train.inputs["weak"])
    record = json.loads((tmp_path / "r" / "config.json").read_text())
    assert record["sweep"]["dataset_options.weak_blank"] == [0.0, 0.5]
    assert record["method_options"] == get_method("vanilla").info.options  # the defaults, recorded
    assert set(record["provenance"]) == {"versions", "git_commit", "data_dir"}


def test_static_sweep_values_get_a_subfolder_and_the_root_records_the_sweep(tmp_path):
    cfg = tiny_config(seeds=(0,), sweep={"model.fusion_hidden": [(8,), (4,)]})
    programs = run(cfg, str(tmp_path / "r"))
    assert [p.tag for p in programs] == ["model.fusion_hidden=(8,)", "model.fusion_hidden=(4,)"]
    assert programs[1].config.model.fusion_hidden == (4,)
    for p in programs:
        sub = json.loads((tmp_path / "r" / p.tag / "config.json").read_text())
        assert sub["model"]["fusion_hidden"] == list(p.config.model.fusion_hidden)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["sweep"] == {
        "model.fusion_hidden": [[8], [4]]}
    with pytest.raises(FileExistsError, match="--overwrite"):
        run(cfg, str(tmp_path / "r"))


def test_dataset_options_that_change_shapes_cannot_share_a_program():
    cfg = tiny_config(seeds=(0,), sweep={"dataset_options.weak_dim": [64, 32]})
    with pytest.raises(ValueError, match="dataset_options.weak_dim changes the inputs' shapes"):
        run(cfg, None)


def test_the_builder_decides_the_method_and_nothing_is_written_without_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []

    def build(cfg, splits):
        seen.append((cfg.method, splits.num_classes))
        return get_method("ensemble")

    (program,) = run(tiny_config(seeds=(0,)), None, build=build)
    assert seen == [("vanilla", 4)] and program.fit.test[0]["acc"] >= 0
    assert list(tmp_path.iterdir()) == []
