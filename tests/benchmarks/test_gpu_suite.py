"""benchmarks/gpu_suite.sh: its commands (dry run), failure and budget accounting; a smoke run (slow)."""
import json
import os
import pathlib
import subprocess

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_suite.sh"
STEPS = ["kernels", "av_step_b64", "av_step_compile_b64", "pid_xor", "pipeline", "av_step_b128",
         "av_step_compile_b128", "methods_step"]


def suite(*args, check=True, env=None):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, check=check,
                          cwd=SCRIPT.parents[1], env=env)


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_dry_run_lists_every_gpu_measurement_with_gpu_outputs(tmp_path):
    out = tmp_path / "results"
    lines = suite("--dry-run", "--out", str(out)).stdout.splitlines()
    commands = dict(line.split(": ", 1) for line in lines)
    assert list(commands) == STEPS
    for name in STEPS:
        assert f"{out}/{name}_gpu.json" in commands[name]
    assert "--batch 128" in commands["av_step_b128"] and "fp32 bf16" in commands["av_step_b128"]
    assert "--torch-compile" in commands["av_step_compile_b64"]
    assert "--width 1024" in commands["pid_xor"]
    assert "--step-batch 64" in commands["pipeline"]
    assert not out.exists()  # a dry run writes nothing


def test_every_step_runs_when_the_others_fail_and_the_suite_then_fails(tmp_path):
    env = {**os.environ, "PYTHON": "false"}  # every command fails at once (and "torch" is missing)
    result = suite("--smoke", "--out", str(tmp_path), check=False, env=env)
    assert result.returncode == 1
    failed = [line.split()[1] for line in result.stdout.splitlines() if line.strip().startswith("FAILED")]
    assert failed == ["kernels", "pid_xor", "pipeline", "methods_step"]
    assert "skipped av_step_b2 (torch not installed)" in result.stdout


def test_steps_past_the_budget_are_failed_not_run(tmp_path):
    result = suite("--smoke", "--budget", "5", "--out", str(tmp_path), check=False)
    assert result.returncode == 1 and result.stdout.count("not run: the 5 s budget is spent") == 4
    assert not list(tmp_path.glob("*.json"))


def test_unknown_option_is_refused():
    result = suite("--fast", check=False)
    assert result.returncode == 2 and "unknown option" in result.stderr


@pytest.mark.slow  # 2 min 13 s on the shared 2-core CPU (load ~8): over the default suite's budget; -m slow
def test_smoke_run_writes_every_result_it_can_on_the_cpu(tmp_path):
    result = suite("--smoke", "--out", str(tmp_path), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ["methods_step", "kernels", "pid_xor", "pipeline"]:
        assert json.loads((tmp_path / f"{name}_gpu.json").read_text())
    assert json.loads((tmp_path / "kernels_gpu.json").read_text())["mode"] == "interpret"
