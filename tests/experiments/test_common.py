"""jaxmm.experiments._common: the options every experiment shares, applied to its RunConfigs."""
import subprocess
import sys

import pytest

from jaxmm.experiments._common import configure, experiment_parser, parse
from jaxmm.train.config import RunConfig, TrainConfig


def _jaxmm(*args, cwd):
    return subprocess.run([sys.executable, "-m", "jaxmm.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_configure_applies_seeds_epochs_and_overrides_to_a_copy():
    base = RunConfig(train=TrainConfig(epochs=100, progress=True), hparams={"lam": 1.0})
    cfg = configure(base, seeds=[3, 4], epochs=7, progress=False, overrides=["optimizer.lr=0.5", "hparams.lam=2"],
                    method="synib")
    assert cfg.seeds == (3, 4) and cfg.train.epochs == 7 and cfg.train.progress is False
    assert cfg.optimizer.lr == 0.5 and cfg.hparams == {"lam": 2} and cfg.method == "synib"
    assert base.train.epochs == 100 and base.hparams == {"lam": 1.0} and base.seeds == (0,)  # unchanged
    assert configure(base).train == base.train  # None keeps the config's values


def test_parse_checks_seeds_and_overrides_before_anything_runs(capsys):
    parser = experiment_parser("demo", "demo", epochs=5)
    args = parse(parser, ["--seeds", "1,2", "--set", "train.batch_size=32"])
    assert args.seeds == (1, 2) and args.epochs == 5 and args.set == ["train.batch_size=32"]
    for argv, named in ((["--seeds", "0,x"], "--seeds '0,x'"), (["--seeds", "1,1"], "repeat a seed"),
                        (["--set", "optimizer.lr=abc"], "optimizer.lr"), (["--set", "train.epochs=2.5"], "epochs")):
        with pytest.raises(SystemExit) as e:
            parse(parser, argv)
        assert e.value.code == 2 and named in capsys.readouterr().err


def test_cli_bad_experiment_options_are_one_line(tmp_path):
    result = _jaxmm("experiment", "spurious-xor", "--set", "optimizer.lr=fast", cwd=tmp_path)
    assert result.returncode == 2 and "optimizer.lr" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("jaxmm experiment spurious-xor: error:")


def test_cli_second_invocation_keeps_the_first_results_unless_overwrite(tmp_path):
    args = ["experiment", "spurious-xor", "--methods", "vanilla", "--epochs", "1", "--seeds", "0", "--alphas", "0",
            "--out-dir", "out"]
    assert _jaxmm(*args, cwd=tmp_path).returncode == 0
    first = (tmp_path / "out" / "spurious-xor" / "results.json").read_text()
    again = _jaxmm(*args, cwd=tmp_path)
    assert again.returncode == 1 and "pass --overwrite" in again.stderr and "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert (tmp_path / "out" / "spurious-xor" / "results.json").read_text() == first
    assert _jaxmm(*args, "--overwrite", cwd=tmp_path).returncode == 0
