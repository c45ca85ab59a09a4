"""The example notebooks run, at small size (``JAXMM_NOTEBOOK_SMALL=1``), and show what they claim.

Each notebook executes in a fresh kernel whose working directory is a temporary folder; it saves its
figure (PNG) and a JSON of its numbers there, and ends by asserting its own claims. The avdigits
notebook reads a tiny FSDD-format fixture through ``$JAXMM_FSDD_DIR``, never the shared recordings.
Compilation is most of what a small notebook costs, so the kernel compiles with most XLA
optimisations off (``JAX_DISABLE_MOST_OPTIMIZATIONS=1``; the same values up to float rounding).
"""
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from test_avdigits import write_fake_fsdd  # tests/data, on the pytest pythonpath

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOKS = ("01_own_model_and_optax_chain", "02_spurious_xor_grid", "03_diagnosing_imbalance_avdigits",
             "04_sharded_mesh")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_own_model(summary):
    assert summary["own_test_acc"] > 0.4 and min(summary["fit_test_acc"]) > 0.4  # 4 classes: chance 0.25
    for coef in (summary["own_coef"], summary["fit_coef"]):
        values = np.concatenate([coef["strong"], coef["weak"]])
        assert len(coef["strong"]) == 4 and np.all((values > 0) & (values <= 1))
        assert coef["strong"][0] < 1.0  # the fast modality is slowed first


def check_spurious_xor(summary):
    acc = {name: np.asarray(a) for name, a in summary["test_acc"].items()}
    assert set(acc) == {"vanilla", "synib-random"}
    assert all(a.shape == (len(summary["alphas"]), len(summary["seeds"])) for a in acc.values())
    assert summary["alphas"][0] == 0.0 and acc["vanilla"][0].mean() > 0.9  # learns the XOR without a shortcut
    assert acc["vanilla"][-1].mean() < 0.65  # and loses it with one


def check_imbalance(summary, fsdd):
    assert Path(summary["recordings"]) == fsdd.resolve()  # the fixture, not the shared recordings
    assert summary["runs"] == ["unimodal[audio]", "unimodal[image]", "vanilla", "ogm_ge"]
    assert summary["probe"]["unimodal[audio]"]["audio"] > 0.2 and summary["probe"]["unimodal[image]"]["image"] > 0.2
    assert set(summary["probe"]["ogm_ge"]) == {"audio", "image"}
    coef = np.concatenate([summary["ogm_ge_coef"][m] for m in ("audio", "image")])
    assert coef.shape == (6,) and np.all((coef > 0) & (coef <= 1)) and coef.min() < 1


def check_sharded(summary):
    assert summary["devices"] == 8
    assert summary["max_abs_diff"]["params"] < 1e-4 and summary["max_abs_diff"]["train/loss"] < 1e-4
    assert summary["test_acc"]["1"] == pytest.approx(summary["test_acc"]["N"], abs=1e-3)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    nb = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown"
    assert any('os.environ.get("JAXMM_NOTEBOOK_SMALL") == "1"' in c.source for c in nb.cells[:3])
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{name}: clear the outputs before committing"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_small(name, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXMM_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("JAXMM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")  # tiny programs: XLA compiles them a third faster
    fsdd = write_fake_fsdd(tmp_path / "fsdd", per_digit=2)
    monkeypatch.setenv("JAXMM_FSDD_DIR", str(fsdd))
    work = tmp_path / "work"
    work.mkdir()

    nb = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()

    figure = work / f"{name}.png"
    assert figure.read_bytes()[:8] == PNG_MAGIC
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert shown, "the figure is not displayed inline"
    summary = json.loads((work / f"{name}.json").read_text())
    if name.startswith("01"):
        check_own_model(summary)
    elif name.startswith("02"):
        check_spurious_xor(summary)
    elif name.startswith("03"):
        check_imbalance(summary, fsdd)
    else:
        check_sharded(summary)
