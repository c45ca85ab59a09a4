"""``train.parallel="shard_map"`` on 8 simulated CPU devices equals ``auto`` on one device.

One subprocess (``XLA_FLAGS=--xla_force_host_platform_device_count=8``) trains each method with
:func:`~jaxmm.train.loop.fit` (two runs, two epochs, epoch hooks included) on one device under
``auto`` and on 8 devices under ``shard_map`` with synchronised BatchNorm, and compares the final
parameters and method state. The batch of 16 leaves 2 rows per device, and the last batch of
each epoch is padded, so any reduction over the batch that stayed local, any random draw that
depends on the device count, and any padded row that counts shows up as a difference.
Every method takes minutes on 2 CPU cores (``slow``); the default suite runs :data:`FAST`.
"""
import json
import sys
import textwrap

import pytest

from jaxmm.methods import available

from _devices import run_on_devices

SCRIPT = textwrap.dedent("""
    import json, sys, traceback
    import jax, numpy as np
    from jaxmm.methods import get_method
    from jaxmm.train.loop import fit
    from jaxmm.train.sharding import make_data_mesh
    from _tiny import METHOD_OPTIONS, MODEL, OPT, tiny_splits, train_cfg
    assert jax.device_count() == 8, jax.devices()
    names = json.loads(sys.argv[1])
    splits = [tiny_splits(n=(44, 16, 16))]
    results = {}
    for name in names:
        try:
            method = get_method(name, **METHOD_OPTIONS.get(name, {}))
            final = []
            for devices, parallel in ((1, "auto"), (8, "shard_map")):
                cfg = train_cfg(epochs=2, parallel=parallel, eval_batch_size=16)
                r = fit(method, splits, [0, 1], MODEL, OPT, cfg, mesh=make_data_mesh(devices))
                final.append(jax.tree.map(np.asarray, (r.state.params, r.state.method_state)))
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), *final)
            results[name] = {"ok": True}
        except Exception:
            results[name] = {"ok": False, "error": traceback.format_exc()[-2500:]}
    print("RESULTS " + json.dumps(results))
""")


def run_methods(names):
    """Runs SCRIPT for ``names`` in one 8-device subprocess; returns its per-method results."""
    stdout = run_on_devices(SCRIPT, 8, json.dumps(names), timeout=1800)
    line = next(ln for ln in stdout.splitlines() if ln.startswith("RESULTS "))
    results = json.loads(line[len("RESULTS "):])
    assert sorted(results) == sorted(names)
    failed = {n: r["error"] for n, r in results.items() if not r["ok"]}
    assert not failed, "\n\n".join(f"{n}:\n{e}" for n, e in failed.items())


BATCH_NORM_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from jaxmm.methods import get_method
    from jaxmm.models.multimodal import ModelOutput
    from jaxmm.train.loop import fit
    from jaxmm.train.sharding import make_data_mesh
    from _tiny import OPT, tiny_splits, train_cfg

    class Normed(nnx.Module):
        # a user's model with BatchNorm in each tower and dropout before the head; no bias before BatchNorm
        # (its gradient is zero up to rounding, which Adam would blow up into steps of size lr)
        def __init__(self, rngs):
            self.modalities = ("a", "b")
            self.towers = nnx.Dict({m: nnx.Linear(4, 8, use_bias=False, rngs=rngs) for m in self.modalities})
            self.norms = nnx.Dict({m: nnx.BatchNorm(8, rngs=rngs) for m in self.modalities})
            self.drop = nnx.Dropout(DROPOUT, rngs=rngs)
            self.head = nnx.Linear(16, 3, rngs=rngs)
            self.heads = nnx.Dict({m: nnx.Linear(8, 3, rngs=rngs) for m in self.modalities})

        def __call__(self, inputs):
            z = {m: jax.nn.relu(self.norms[m](self.towers[m](inputs[m]))) for m in self.modalities}
            return ModelOutput(self.head(self.drop(jnp.concatenate([z["a"], z["b"]], -1))),
                               {m: self.heads[m](z[m]) for m in self.modalities}, z)

    splits = [tiny_splits(n=(48, 16, 16))]
    def train(devices, dropout=0.0, **cfg):
        global DROPOUT
        DROPOUT = dropout
        r = fit(get_method("vanilla"), splits, [0, 1], Normed, OPT, train_cfg(epochs=2, eval_batch_size=16, **cfg),
                mesh=make_data_mesh(devices))
        as_array = lambda x: np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
        return jax.tree.map(as_array, (r.state.params, r.state.rest))

    close = lambda a, b: jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5), a, b)
    one = train(1)
    close(one, train(8, parallel="shard_map"))  # synchronised BatchNorm: the model of one device
    local = train(8, parallel="shard_map", batch_norm="local")
    # per-device moments of 2 rows give another model: every parameter that trains differs, ...
    moved = jax.tree.map(lambda x, y: bool(np.max(np.abs(x - y)) > 1e-3), one[0], local[0])
    assert all(jax.tree.leaves(moved)), moved
    # ... and the running averages are the mean of the devices' running averages, finite
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(local[1]) if x.dtype.kind == "f")
    # dropout streams are folded per device: the one-device draws are not used, the model's key stays
    dropped = train(8, dropout=0.5, parallel="shard_map")
    alone = train(1, dropout=0.5)
    assert not np.allclose(dropped[0]["head"]["kernel"], alone[0]["head"]["kernel"])
    np.testing.assert_array_equal(dropped[1]["drop"]["rngs"]["key"], alone[1]["drop"]["rngs"]["key"])
    print("BATCH_NORM_OK")
""")


def test_batch_norm_sync_equals_one_device_and_local_is_another_model():
    assert "BATCH_NORM_OK" in run_on_devices(BATCH_NORM_SCRIPT, 8, timeout=900)


# The default suite's subset: a random shuffle across the batch and input-level counterfactual passes
# (synib's random mask), a batch statistic fed to the gradient transform (ogm_ge) and per-term gradients
# (mmpareto).
FAST = ("synib", "ogm_ge", "mmpareto")


def test_shard_map_equals_auto_for_fast_methods():
    run_methods(list(FAST))


@pytest.mark.slow
def test_shard_map_equals_auto_for_every_method():
    run_methods(sorted(available()))


if __name__ == "__main__":  # python tests/train/test_shard_map.py NAME...: check the named methods
    run_methods(sys.argv[1:])
    print("shard_map equals auto:", " ".join(sys.argv[1:]))
