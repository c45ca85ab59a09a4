"""jaxmm.train.state and the trainer's model protocol: a user's own model, refused clearly when it lacks a piece."""
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

from jaxmm.methods import get_method
from jaxmm.models.multimodal import ModelOutput
from jaxmm.train.loop import fit

from ._tiny import OPT, tiny_splits, train_cfg


class Plain(nnx.Module):
    """A user's model: two linear towers, a fused head, heads per modality (no encode/fuse methods)."""

    def __init__(self, rngs, modalities=("a", "b"), fused=True):
        self.modalities = modalities
        self.towers = nnx.Dict({m: nnx.Linear(4, 8, rngs=rngs) for m in ("a", "b")})
        self.head = nnx.Linear(16, 3, rngs=rngs)
        self.heads = nnx.Dict({m: nnx.Linear(8, 3, rngs=rngs) for m in ("a", "b")})
        self.fused = fused

    def __call__(self, inputs):
        z = {m: self.towers[m](inputs[m]) for m in ("a", "b")}
        logits = self.head(jnp.concatenate([z["a"], z["b"]], -1)) if self.fused else None
        return ModelOutput(logits, {m: self.heads[m](z[m]) for m in ("a", "b")}, z)


def test_own_model_and_optax_chain_train():
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    r = fit(get_method("vanilla"), [tiny_splits()], [0, 1], Plain, opt, train_cfg(epochs=8))
    assert min(t["acc"] for t in r.test) > 0.6  # 3 classes: chance 1/3
    assert set(r.params) == {"towers", "head", "heads"}


@pytest.mark.parametrize("model, method, match", [
    (lambda rngs: Plain(rngs, modalities=None), "vanilla", "no `modalities` attribute"),
    (Plain, "ogm_ge", r"reads \['encode', 'fuse'\] of the model, which Plain lacks"),
    (lambda rngs: Plain(rngs, fused=False), "vanilla", "returns logits=None"),
    (lambda rngs: Plain(rngs, modalities=("a", "b", "c")), "vanilla", r"unimodal logits for \['a', 'b'\]"),
])
def test_a_model_lacking_what_the_method_reads_is_refused_naming_it(model, method, match):
    with pytest.raises(ValueError, match=match):
        fit(get_method(method), [tiny_splits()], [0], model, OPT, train_cfg(epochs=1))


def test_bad_model_and_optimizer_arguments():
    with pytest.raises(TypeError, match="ModelConfig or a factory"):
        fit(get_method("vanilla"), [tiny_splits()], [0], 42, OPT, train_cfg(epochs=1))
    with pytest.raises(TypeError, match="OptimizerConfig or an optax.GradientTransformation"):
        fit(get_method("vanilla"), [tiny_splits()], [0], Plain, "adam", train_cfg(epochs=1))


def test_a_user_optimizer_has_no_lr_hyperparameter():
    with pytest.raises(ValueError, match=r"no hyper-parameter\(s\) \['lr'\]"):
        fit(get_method("vanilla"), [tiny_splits()], [0], Plain, optax.sgd(0.1), train_cfg(epochs=1),
            hparams=[{"lr": 0.5}])
