import jax
import numpy as np
import pytest

from jaxmm.methods import get_method
from jaxmm.train.loop import fit

from ._tiny import MODEL, OPT, tiny_splits, train_cfg


def test_resume_equals_uninterrupted(tmp_path):
    # EMA fill: method state, dropout streams and the data order must all survive the restart.
    method = get_method("synib", mask="random", fill="ema")
    model = type(MODEL)(encoder_hidden=(8,), fusion_hidden=(8,), dropout=0.2)
    kw = dict(hparams=[{}, {"lam": 1.0}])
    straight = fit(method, [tiny_splits()], [0, 1], model, OPT, train_cfg(epochs=4, select="best"), **kw)
    run = str(tmp_path / "run")
    fit(method, [tiny_splits()], [0, 1], model, OPT, train_cfg(epochs=2, select="best", checkpoint_every=1),
        run_dir=run, **kw)  # "killed" after epoch 2
    resumed = fit(method, [tiny_splits()], [0, 1], model, OPT,
                  train_cfg(epochs=4, select="best", checkpoint_every=1), run_dir=run, resume=True, **kw)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 straight.state.params, resumed.state.params)
    jax.tree.map(np.testing.assert_array_equal, straight.state.method_state, resumed.state.method_state)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    assert straight.selected_epoch == resumed.selected_epoch


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(get_method("vanilla"), [tiny_splits()], [0], MODEL, OPT, train_cfg(checkpoint_every=1),
            run_dir=str(tmp_path / "empty"), resume=True)
