"""`jaxmm evaluate RUN_DIR [--robustness]`: metrics recomputed from the checkpoint, curves written, and every
folder it cannot evaluate named in one line (exit code 1; a bad option: argparse's exit code 2)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from test_evaluate import trained_run

from jaxmm.cli import main


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "jaxmm.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_run(tmp_path_factory)


def test_evaluate_prints_the_recomputed_metrics_and_writes_the_curves(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    done = _run(["evaluate", str(run), "--robustness", "--levels", "0,1", "--fill", "mean", "--noise-seed", "2"],
                tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    results = json.loads((run / "results.json").read_text())
    assert lines[0] == (f"vanilla on imbalance, 2 run(s) (seeds [0, 1]), selected epochs "
                        f"{[r['selected_epoch'] for r in results['runs']]}, recomputed from {run}/checkpoints")
    assert "test metrics (mean ± std; identical to results.json):" in lines
    assert "val metrics (mean ± std; identical to results.json):" in lines
    acc = results["test_summary"]["acc"]
    assert f"  {'acc':24s} {acc['mean']:.4f} ± {acc['std']:.4f}" in lines
    assert "| modality | noise 0 | noise 1 | dropped (mean) |" in lines
    record = json.loads((run / "robustness.json").read_text())
    assert (record["fill"], record["levels"], record["seed"], record["split"]) == ("mean", [0.0, 1.0], 2, "test")
    assert record["clean"]["per_run"] == [r["test"]["acc"] for r in results["runs"]]
    assert (run / "robustness.png").is_file() and lines[-1] == f"outputs: {run}/robustness.json, {run}/robustness.png"


def test_a_missing_folder_is_one_line_with_exit_code_1(tmp_path):
    done = _run(["evaluate", "nowhere"], tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"jaxmm evaluate: error: {tmp_path / 'nowhere'}: no such folder; give the folder of a run written by "
        "jaxmm train (--debug shows the traceback)"]


def test_folders_without_an_evaluable_run_are_one_line(trained, tmp_path):
    """In-process: ``SystemExit(message)`` is what the interpreter prints as the one line, with exit code 1."""
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(trained / "config.json", bare / "config.json")
    cases = [(tmp_path, f"{tmp_path} is not a run folder (no config.json)"),
             (bare, f"{bare} has no checkpoint (trained with train.checkpoint_every=0?)")]
    for folder, message in cases:
        with pytest.raises(SystemExit) as exit_:
            main(["evaluate", str(folder)])
        assert str(exit_.value.code).startswith(f"jaxmm evaluate: error: {message}"), exit_.value.code
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(bare), "--levels", "0,x"])
    assert str(exit_.value.code).startswith("jaxmm evaluate: error: --levels '0,x': give comma-separated")


def test_a_bad_option_is_argparses_exit_code_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "run", "--fill", "median"])
    assert exit_.value.code == 2
    assert "argument --fill: invalid choice: 'median'" in capsys.readouterr().err
