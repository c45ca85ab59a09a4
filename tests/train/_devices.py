"""Checks that need several devices: a Python script run in a subprocess on simulated CPU devices."""
import os
import subprocess
import sys


def run_on_devices(script: str, devices: int, *args: str, timeout: int = 600) -> str:
    """Runs ``script`` with ``python -c`` on ``devices`` simulated CPU devices; returns its standard output.

    The script can import the shared test helpers of ``tests/train`` (``_tiny``). Its programs compile
    with most XLA optimisations off (about a third faster to compile; every check compares programs
    compiled alike or allows float rounding). Fails the test with the end of the script's standard
    error if it exits non-zero.
    """
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu",
           "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
