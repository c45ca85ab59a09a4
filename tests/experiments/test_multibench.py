import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from multibench_fixture import write_file

from jaxmm.experiments import multibench as E

N = 16  # examples per split
DIMS = {"vision": 20, "audio": 5, "text": 300}  # MulT's aligned mosi_data.pkl


def test_missing_files_stop_before_training_listing_every_path(tmp_path):
    env = {**os.environ, "JAXMM_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "jaxmm.cli", "experiment", "multibench", "--data-dir",
                           str(tmp_path / "data"), "--out-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    for name in ("humor.pkl", "sarcasm.pkl", "mosi_data.pkl", "mosi_raw.pkl"):
        assert f"{tmp_path / 'data' / name}  (missing)" in proc.stderr
    assert "nothing was trained" in proc.stderr and "MultiBench" in proc.stderr and "FactorCL" in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_locate_prefers_the_mult_mosi_file_and_needs_every_dataset(tmp_path):
    (tmp_path / "mosi_raw.pkl").write_bytes(b"")
    assert E.locate(str(tmp_path), ["mosi"]) == {"mosi": (str(tmp_path / "mosi_raw.pkl"), "raw")}
    (tmp_path / "mosi_data.pkl").write_bytes(b"")
    assert E.locate(str(tmp_path), ["mosi"]) == {"mosi": (str(tmp_path / "mosi_data.pkl"), "mult")}
    with pytest.raises(SystemExit, match=r"sarcasm.pkl  \(missing\)"):
        E.locate(str(tmp_path), ["mosi", "mustard"])


def test_scores_and_table_cells():
    labels = np.array([0, 1, 1, 0])
    pred = np.array([[0, 1, 0, 0], [1, 1, 1, 0]])
    masks = {"all": np.array([1, 0, 1, 0], bool), "majority": np.array([1, 1, 1, 0], bool)}
    s = E.scores(labels, pred, masks)
    # seed 0: 3/4 right, subset {0, 2}: 1/2, majority {0, 1, 2}: 2/3; seed 1: 3/4, 1/2, 2/3
    np.testing.assert_allclose(s["all"], [75.0, 75.0])
    np.testing.assert_allclose(s["syn"], [50.0, 50.0])
    np.testing.assert_allclose(s["syn (majority)"], [200 / 3, 200 / 3])
    record = {"mosi": {"scores": {"vanilla": s}, "subset": {"all": 2, "majority": 3}, "n_test": 4}}
    text = E.table(record, ["mosi"])
    assert "| vanilla | 75.0 ± 0.0 [72.8] | 50.0 ± 0.0 [31.4] | 66.7 ± 0.0 |" in text
    assert "MOSI: 2 (3 by majority) of 4" in text


def test_unimodal_predictors_are_the_fused_runs_pretraining_and_synib_gets_its_flags():
    fused = E.run_config("mosi", "/d/mosi_data.pkl", "mult", "vanilla", "vanilla", {}, (0, 1), 3, [])
    uni = E.unimodal_config(fused, "text")
    assert (uni.name, uni.method, uni.method_options) == ("unimodal[text]", "unimodal", {"modality": "text"})
    assert uni.train.epochs == fused.train.pretrain_epochs == 100 and uni.train.pretrain_epochs == 0
    assert fused.train.epochs == 3 and uni.modalities == fused.modalities == ("vision", "text")
    assert uni.optimizer == fused.optimizer and uni.seeds == (0, 1)
    no_pretrain = E.run_config("mosi", "/d/mosi_data.pkl", "mult", "vanilla", "vanilla", {}, (0,), 3,
                               ["train.pretrain_epochs=0"])
    assert E.unimodal_config(no_pretrain, "vision").train.epochs == 3
    syn = E.run_config("mosi", "/d/mosi_data.pkl", "mult", "synib-random", *E.METHODS["synib-random"], (0,), None, [])
    assert syn.hparams["lam"] == 0.1 and syn.hparams["p"] == 0.3 and syn.optimizer.lr == 5e-4
    assert syn.dataset_options == {"dataset": "mosi", "variant": "mult", "data_dir": "/d/mosi_data.pkl"}


def test_tiny_run_table_values_come_from_the_runs(tmp_path, capsys):
    write_file(tmp_path / "mosi_data.pkl", N, dims=DIMS)  # left-padded [N, 50, D], -inf audio, [N, 1, 1] labels
    small = ["train.pretrain_epochs=0", "model.encoders={'vision': 'mlp', 'text': 'mlp'}", "model.encoder_options={}",
             "model.encoder_hidden=[4]", "model.fusion_hidden=[4]", "train.progress=False",
             "train.tensorboard=False", "train.checkpoint_every=0"]
    E.main(["--data-dir", str(tmp_path), "--datasets", "mosi", "--methods", "vanilla,ensemble", "--seeds", "0",
            "--epochs", "1", "--out-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            *[a for s in small for a in ("--set", s)]])
    root = tmp_path / "out" / "multibench"
    record = json.loads((root / "results.json").read_text())["mosi"]
    saved = np.load(root / "mosi" / "predictions.npz")
    labels = saved["labels"]
    with open(tmp_path / "mosi_data.pkl", "rb") as f:
        np.testing.assert_array_equal(labels, pickle.load(f)["test"]["labels"].reshape(-1) > 0)
    uni = [saved[f"pred/unimodal[{m}]"][0] for m in ("vision", "text")]
    strict = np.array([all(p[i] != labels[i] for p in uni) for i in range(len(labels))])
    assert 0 < strict.sum() < len(labels)  # the subset check below compares something
    np.testing.assert_array_equal(saved["subset/all"], strict)
    np.testing.assert_array_equal(saved["subset/majority"], strict)  # one seed: a majority of 1 is all
    assert record["subset"] == {"all": int(strict.sum()), "majority": int(strict.sum())}
    assert record["n_test"] == N and record["modalities"] == ["vision", "text"]
    assert set(record["scores"]) == {"unimodal[vision]", "unimodal[text]", "vanilla", "ensemble"}
    for label, res in record["scores"].items():
        pred = saved[f"pred/{label}"][0]
        run = json.loads((root / "mosi" / label / "results.json").read_text())["runs"][0]["test"]
        assert res["all"][0] == pytest.approx(100 * run["acc"]) == pytest.approx(100 * np.mean(pred == labels))
        assert res["syn"][0] == pytest.approx(100 * np.mean(pred[strict] == labels[strict]), nan_ok=True)
    config = json.loads((root / "mosi" / "unimodal[text]" / "config.json").read_text())
    assert config["method_options"] == {"modality": "text"} and config["train"]["epochs"] == 1
    assert record["paper"]["ensemble"] == [72.8, 0.0]
    out = capsys.readouterr().out
    assert "| ensemble | " in out and "[72.8] |" in out and (root / "multibench.png").stat().st_size > 0
