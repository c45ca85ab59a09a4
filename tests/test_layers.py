"""The import-linter layers contract in setup.cfg ([importlinter]) holds: each package imports only those below it."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_lint_imports_contract_is_kept():
    exe = Path(sys.executable).parent / "lint-imports"
    assert exe.exists(), f"{exe} not found; install the test extra: pip install -e '.[test]'"
    # --no-cache: leave no .import_linter_cache behind in the checkout
    done = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"lint-imports failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    assert "0 broken" in done.stdout
