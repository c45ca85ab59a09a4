"""One tiny logged run shared by the logger, progress and diagnostics tests (one compile for all of them)."""
import contextlib
import io
import json
import sys
import types

import pytest

from jaxmm.methods import get_method
from jaxmm.train.loop import fit

from ._tiny import MODEL, OPT, tiny_splits, train_cfg

REFERENCE = {"a": 0.8, "b": 0.5}


class FakeWandb(types.ModuleType):
    """A stand-in ``wandb`` module that records ``init``, ``log`` and ``finish``."""

    def __init__(self):
        super().__init__("wandb")
        self.calls = []

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        return self

    def log(self, data, step):
        self.calls.append(("log", dict(data), step))

    def finish(self, exit_code=0):
        self.calls.append(("finish", exit_code))


@pytest.fixture(scope="session")
def logged_run(tmp_path_factory):
    """OGM-GE, seeds 0 and 1, 3 epochs into a run folder (checkpoints after epochs 2 and 3): TensorBoard,
    a fake W&B, progress lines on a captured (non-terminal) stdout and a unimodal reference.

    Returns:
      ``SimpleNamespace(path, result, metrics, wandb, stdout)``.
    """
    path = tmp_path_factory.mktemp("logged") / "run"
    wandb, stdout = FakeWandb(), io.StringIO()
    cfg = train_cfg(epochs=3, progress=True, checkpoint_every=2, wandb_project="jaxmm-tests",
                    unimodal_reference=REFERENCE)
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setitem(sys.modules, "wandb", wandb)
        result = fit(get_method("ogm_ge"), [tiny_splits()], [0, 1], MODEL, OPT, cfg, run_dir=str(path))
    metrics = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return types.SimpleNamespace(path=path, result=result, metrics=metrics, wandb=wandb.calls,
                                 stdout=stdout.getvalue())
