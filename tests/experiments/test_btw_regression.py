"""Tests for the btw-regression experiment: its metrics, its table and one tiny end-to-end run on fake FSDD files."""
import json

import numpy as np
import pytest
from test_avdigits import write_fake_fsdd  # tests/data, on the pytest pythonpath

from jaxmm import cli
from jaxmm.experiments import btw_regression as E


def test_scores_against_numpy():
    pred = np.array([4.4, 4.6, 4.5, 9.0, 1.0])
    target = np.array([0.0, 9.0, 5.0, 4.0, 2.0])
    out = E.scores(pred, target)
    # high/low calls around 4.5: pred F T F T F, target F T T F F -> 3 of 5 agree (4.5 itself is low)
    assert out["acc2"] == pytest.approx(0.6)
    assert out["mae"] == pytest.approx(np.mean(np.abs(pred - target)))
    assert out["pearson_r"] == pytest.approx(np.corrcoef(pred, target)[0, 1])


def test_runs_and_table():
    assert list(E.runs_of(E.METHODS, "clean")) == ["unimodal[audio]", "unimodal[image]", "vanilla", "btw"]
    assert list(E.runs_of(E.METHODS, "noise")) == ["unimodal[noise]", "vanilla", "btw"]
    results = {"clean": {"vanilla": {"mae": [1.0, 3.0], "pearson_r": [0.5, 0.5], "acc2": [0.8, 0.6]}},
               "noise": {"unimodal[noise]": {"mae": [2.0, 2.0], "pearson_r": [0.0, 0.0], "acc2": [0.5, 0.5]}}}
    lines = E.table(results, ["clean", "noise"]).splitlines()
    assert lines[0] == "| method | MAE (clean) | r (clean) | Acc-2 (clean) | MAE (noise) | r (noise) | Acc-2 (noise) |"
    assert lines[2] == "| vanilla | 2.000 ± 1.000 | 0.500 ± 0.000 | 0.700 ± 0.100 | — | — | — |"
    assert lines[3] == "| unimodal[noise] | — | — | — | 2.000 ± 0.000 | 0.000 ± 0.000 | 0.500 ± 0.000 |"
    assert E.weights_line(results, ["clean", "noise"]) == ""
    results["noise"]["btw"] = {"btw_weights": {"audio": [0.1, 0.2], "noise": [0.0, 0.01]}}
    assert E.weights_line(results, ["clean", "noise"]).endswith(": with the noise modality: audio 0.150, noise 0.005.")
    model = E.model_config(8, ("audio", "image"))
    assert model.encoders == {"audio": "transformer", "image": "lstm"}
    assert model.encoder_options["image"]["padding"] == "none" and model.encoder_options["audio"]["padding"] == "left"


def run_tiny(tmp_path, capsys, methods, settings):
    """One epoch of ``methods`` x ``settings`` on fake FSDD files; checks every output; returns the arguments."""
    root = write_fake_fsdd(tmp_path / "fsdd", per_digit=1)
    args = ["--methods", ",".join(methods), "--settings", ",".join(settings), "--seeds", "0", "--epochs", "1",
            "--width", "4", "--max-steps", "10", "--data-dir", str(root), "--cache-dir", "",
            "--out-dir", str(tmp_path / "runs"), "--set", "train.batch_size=8"]
    summary = E.main(args)
    out = tmp_path / "runs" / "btw-regression"
    printed = capsys.readouterr().out
    for name in ("results.json", "summary.md", "table.md", "btw_regression.png"):
        assert (out / name).is_file()
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"] == summary["results"] and list(saved["results"]) == list(settings)
    for setting in settings:
        assert list(saved["results"][setting]) == list(E.runs_of(methods, setting))
        for label, metrics in saved["results"][setting].items():
            assert f"| {label} |" in printed
            run = json.loads((out / setting / label / "results.json").read_text())
            # the metrics come from the predictions the trainer itself reported on
            assert metrics["mae"] == pytest.approx([r["test"]["mae"] for r in run["runs"]], rel=1e-5)
            assert ("btw_weights" in metrics) == (label == "btw")
            config = json.loads((out / setting / label / "config.json").read_text())
            assert config["dataset_options"]["noise_modality"] is (setting == "noise")
            encoders = config["model"]["encoders"]
            assert encoders["audio"] == "transformer" and encoders["image"] == "lstm"
    return args


def test_end_to_end_on_fake_recordings(tmp_path, capsys):
    args = run_tiny(tmp_path, capsys, ["vanilla"], ["noise"])
    with pytest.raises(FileExistsError, match="pass --overwrite"):  # refused before anything trains
        E.main(args)


@pytest.mark.slow
def test_every_method_and_setting_end_to_end(tmp_path, capsys):
    run_tiny(tmp_path, capsys, list(E.METHODS), list(E.SETTINGS))


@pytest.mark.parametrize("bad, message", [
    (["--methods", "nope"], r"unknown method\(s\) \['nope'\]"),
    (["--settings", "loud"], r"unknown setting\(s\) \['loud'\]"),
    (["--width", "3"], r"--width must be an even int"),
])
def test_bad_arguments_give_one_line(bad, message, tmp_path):
    with pytest.raises(SystemExit, match=message) as err:
        E.main([*bad, "--out-dir", str(tmp_path)])
    assert "\n" not in str(err.value.code)


def test_cli_reports_a_missing_data_folder_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("JAXMM_FSDD_DIR", raising=False)
    with pytest.raises(SystemExit) as err:
        cli.main(["experiment", "btw-regression", "--data-dir", str(tmp_path / "nowhere"), "--cache-dir", "",
                  "--out-dir", str(tmp_path)])
    text = str(err.value.code)
    assert text.startswith("jaxmm experiment: error: FSDD recordings") and "\n" not in text
