"""Every bad `jaxmm train` input ends in one line naming the problem, exit code 1, no traceback (subprocesses)."""
import json
import os
import socket
import subprocess
import sys

import pytest

from jaxmm.train.config import RunConfig, to_dict

TRAIN = ["train", "--method", "vanilla", "--dataset", "spurious_xor", "--set", "train.epochs=1"]


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "jaxmm.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})


@pytest.fixture
def runs(tmp_path):
    """A runs folder with one recorded run ``old`` (config.json only) and a locked run ``busy``."""
    old = tmp_path / "runs" / "old"
    old.mkdir(parents=True)
    (old / "config.json").write_text(json.dumps(to_dict(RunConfig(name="old", method="vanilla"))))
    busy = tmp_path / "runs" / "busy"
    busy.mkdir()
    (busy / ".lock").write_text(f"{os.getpid()} {socket.gethostname()}")  # this test process: alive
    (tmp_path / "afile").write_text("")
    (tmp_path / "runs" / "ckfile").mkdir()
    (tmp_path / "runs" / "ckfile" / "checkpoints").write_text("")  # a file where the checkpoints folder goes
    return tmp_path


CASES = [
    (["--set", "optimizer.lr=abc"], 'field "optimizer.lr" - should be "float" instead of value "abc"'),
    (["--set", "train.epochs=2.5"], 'field "train.epochs" - should be "int"'),
    (["--set", "optimizer.lr=-1"], "optimizer.lr must be a positive number, got -1.0"),
    (["--set", "optimizer.learning_rate=1"], "unknown field 'learning_rate'"),
    (["--seeds", "0,x"], "--seeds '0,x': give comma-separated non-negative integers"),
    (["--seeds", "0,0"], "seeds [0, 0] repeat a seed"),
    (["--seeds=-1"], "seeds must be non-negative integers"),
    (["--set", "train.select_metric=acc/nope"], "train.select_metric='acc/nope' is not a validation metric"),
    (["--out-dir", "afile"], "--out-dir afile is a file"),
    (["--out-dir", "afile/sub"], "--out-dir afile/sub is not writable (Not a directory)"),
    (["--out-dir", "runs", "--name", "old"], "already holds a run; pass --resume to continue it, --overwrite"),
    (["--out-dir", "runs", "--name", "busy"], "is in use by process"),
    (["--out-dir", "runs", "--name", "old", "--resume", "--set", "optimizer.lr=0.1"],
     "this command changes optimizer.lr: 0.001 -> 0.1"),
    (["--out-dir", "runs", "--name", "nothing", "--resume"], "there is no run to resume"),
    (["--out-dir", "runs", "--name", "old", "--resume", "--overwrite"], "pass one of them"),
    (["--config", "missing.yaml"], "--config missing.yaml: no such file"),
    (["--sweep", "hparams.lam"], "is not of the form key.path=v1,v2"),
    (["--out-dir", "runs", "--name", "ckfile"], "checkpoints is a file, not a folder"),
    (["--set", "optimizer.lr=1e6", "--set", "train.epochs=3"], "training loss diverged at epoch 1: run 0 (seed 0) "
                                                                "rose to"),
]


@pytest.mark.parametrize("extra, message", CASES, ids=[c[1][:40] for c in CASES])
def test_bad_input_is_one_line(runs, extra, message):
    done = _run(TRAIN + extra, runs)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("jaxmm train: error: ") and message in last, last


def test_fsdd_folder_that_does_not_exist_is_named(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXMM_FSDD_DIR": str(tmp_path / "nowhere")}
    done = subprocess.run([sys.executable, "-m", "jaxmm.cli", "train", "--method", "vanilla", "--dataset", "avdigits"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"JAXMM_FSDD_DIR={tmp_path / 'nowhere'} does not exist" in done.stderr.strip().splitlines()[-1]


def test_new_run_without_method_names_the_flag(tmp_path):
    done = _run(["train", "--dataset", "spurious_xor"], tmp_path)
    assert done.returncode == 1 and "--method is required for a new run" in done.stderr
