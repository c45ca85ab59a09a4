"""The wheel: what it ships, what it declares, and that ``jaxmm experiment`` runs from it outside the checkout."""
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    (path,) = out.glob("jaxmm-*.whl")
    return path


def test_wheel_ships_the_package_its_experiments_and_the_license_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"jaxmm", next(t for t in tops if t.endswith(".dist-info"))}  # no experiments/, tests/, docs/
    assert "jaxmm/experiments/spurious_xor.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    required = [line.split()[1].split(">")[0].split("<")[0].split(";")[0].lower()
                for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert "chex" not in required and {"jax", "flax", "optax", "tensorboardx", "pillow"} <= set(required)
    assert "License-Expression: Apache-2.0" in metadata or "License: Apache-2.0" in metadata


def test_installed_wheel_runs_an_experiment_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    script = ("import sys, jaxmm; from jaxmm.cli import main; print('from', jaxmm.__file__); "
              "main(['experiment', 'spurious-xor', '--methods', 'vanilla', '--epochs', '2', '--seeds', '0', "
              "'--alphas', '0'])")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"from {site}" in result.stdout  # the installed copy, not the checkout
    assert "| vanilla |" in result.stdout
    assert (tmp_path / "runs" / "spurious-xor" / "spurious_xor.png").stat().st_size > 0
