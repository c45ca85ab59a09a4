"""jaxmm.train.evaluate.load_run: a finished run folder loaded back reproduces its results.json exactly."""
import json
import pathlib
import shutil

import numpy as np
import pytest

import jaxmm
from jaxmm.cli import main
from jaxmm.train.evaluate import load_run

TRAIN = ["train", "--method", "vanilla", "--dataset", "imbalance", "--seeds", "0,1", "--name", "run",
         "--set", "dataset_options.sizes={'train': 24, 'val': 16, 'test': 16}", "--set", "model.encoder_hidden=(8,)",
         "--set", "model.fusion_hidden=(8,)", "--set", "train.epochs=2", "--set", "train.batch_size=8",
         "--set", "train.select='best'", "--set", "train.tensorboard=False", "--set", "train.progress=False"]


def trained_run(tmp_path_factory) -> pathlib.Path:
    """The folder of one ``jaxmm train`` run (in-process): vanilla on a tiny imbalance problem, seeds 0 and 1,
    2 epochs, best selected. Trained once per test session, by the first module that asks (the evaluate,
    robustness and CLI tests share it; they write only into copies of it)."""
    out = tmp_path_factory.getbasetemp() / "jaxmm_evaluate_run"
    if not (out / "run" / "results.json").exists():
        main(TRAIN + ["--out-dir", str(out), "--overwrite"])
    return out / "run"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def loaded(trained):
    return load_run(str(trained))


def test_selected_parameters_reproduce_results_json_exactly(trained, loaded):
    results = json.loads((trained / "results.json").read_text())
    assert loaded.seeds == (0, 1) and loaded.num_runs == 2 and loaded.modalities == ("strong", "weak")
    assert loaded.selected_epoch == [r["selected_epoch"] for r in results["runs"]]
    for split in ("test", "val"):
        assert loaded.evaluate(split) == [r[split] for r in results["runs"]]
    assert jaxmm.load_run is load_run


def test_predict_all_runs_one_run_and_the_model_agree(loaded):
    inputs = loaded.splits[0].test.inputs
    every = loaded.predict(inputs)
    assert every.shape == (2, 16, loaded.task.num_outputs)
    one = loaded.predict(inputs, run=1)
    np.testing.assert_array_equal(one, every[1])
    np.testing.assert_allclose(np.asarray(loaded.model(1)(inputs).logits), one, rtol=1e-5, atol=1e-6)
    assert not np.allclose(every[0], every[1])  # two seeds, two models
    acc = [np.mean(np.argmax(p, -1) == s.test.label) for p, s in zip(loaded.predict_runs(
        {m: np.stack([s.test.inputs[m] for s in loaded.splits]) for m in inputs}), loaded.splits)]
    assert acc == [r["test"]["acc"] for r in loaded.results["runs"]]
    with pytest.raises(ValueError, match="run 2 does not exist; this folder holds runs 0..1"):
        loaded.predict(inputs, run=2)
    with pytest.raises(ValueError, match=r"inputs lack modalities \['weak'\]"):
        loaded.predict({"strong": inputs["strong"]})


def test_a_sweep_program_folder_loads_and_its_parent_names_it(trained, tmp_path):
    sweep = {"train.patience": [0]}  # one static value: one program, in folder "train.patience=0"
    program = tmp_path / "sweep" / "train.patience=0"
    shutil.copytree(trained, program)
    for folder in (program, program.parent):
        record = json.loads((trained / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**record, "sweep": sweep}))
    assert load_run(str(program)).evaluate("test") == [r["test"] for r in json.loads(
        (trained / "results.json").read_text())["runs"]]
    with pytest.raises(ValueError, match=f"is a sweep of 1 programs; evaluate one of its program folders: {program}$"):
        load_run(str(program.parent))


def test_last_selection_restores_the_final_epoch_and_a_mismatch_with_results_json_is_refused(trained, tmp_path):
    copy = tmp_path / "last"
    shutil.copytree(trained, copy)
    record = json.loads((copy / "config.json").read_text())
    record["train"]["select"] = "last"
    (copy / "config.json").write_text(json.dumps(record))
    results = json.loads((copy / "results.json").read_text())
    for epoch in (2, 1):
        for r in results["runs"]:
            r["selected_epoch"] = epoch
        (copy / "results.json").write_text(json.dumps(results))
        if epoch == 2:
            assert load_run(str(copy)).selected_epoch == [2, 2]
    with pytest.raises(ValueError, match=r"holds the parameters of epochs \[2, 2\], but results.json reports "
                                         r"epochs \[1, 1\]"):
        load_run(str(copy))


def test_folders_that_hold_no_evaluable_run_are_named(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
        load_run(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="is not a run folder \\(no config.json\\)"):
        load_run(str(tmp_path))
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(trained / "config.json", bare / "config.json")
    with pytest.raises(FileNotFoundError, match="has no checkpoint \\(trained with train.checkpoint_every=0\\?\\)"):
        load_run(str(bare))
