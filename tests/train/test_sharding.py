"""The sharded step on 8 simulated CPU devices equals the single-device step."""
import textwrap

from _devices import run_on_devices

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from jaxmm.methods import get_method
    from jaxmm.train.batching import batches, epoch_permutations, stack_runs
    from jaxmm.train.sharding import make_data_mesh
    from jaxmm.tasks import Task
    from jaxmm.train.trainer import Trainer, resolve_hparams
    from _tiny import MODEL, OPT, tiny_splits
    assert jax.device_count() == 8, jax.devices()
    method = get_method("synib", mask="random")
    data = stack_runs([tiny_splits(n=(64, 16, 16)).train] * 2)
    hp = resolve_hparams(method, OPT, [{}, {"lam": 1.0}])
    out = []
    for devices in (1, 8):
        trainer = Trainer(method, {"a": 4, "b": 4}, Task(num_classes=3), MODEL, OPT, mesh=make_data_mesh(devices))
        order = epoch_permutations([0, 1], 0, 64)
        state = trainer.init([0, 1], hp, jax.tree.map(lambda x: x[0], next(batches(data, order, 16))))
        for epoch in range(2):
            for batch in batches(data, epoch_permutations([0, 1], epoch, 64), 16):
                state, _ = trainer.step(state, batch, hp)
        if devices == 8:
            leaf = jax.tree.leaves(state.params)[0]
            assert len(leaf.sharding.device_set) == 8
        out.append(jax.tree.map(np.asarray, state.params))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), *out)
    print("SHARDED_OK")
""")


def test_sharded_step_equals_single_device():
    assert "SHARDED_OK" in run_on_devices(SCRIPT, 8)
