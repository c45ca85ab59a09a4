"""shard_batch on two simulated CPU devices (a subprocess: the device count is fixed at jax's start)."""
import textwrap

from _devices import run_on_devices

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from jaxmm.data.placement import shard_batch
    from jaxmm.train.sharding import make_data_mesh

    mesh = make_data_mesh()
    tree = {"x": np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2), "y": np.arange(12).reshape(3, 4)}
    for source in (tree, jax.device_put(tree)):  # host arrays, and device arrays on one device
        placed = shard_batch(source, mesh)
        for name, value in placed.items():
            assert np.array_equal(np.asarray(value), tree[name]), name
            shards = sorted(value.addressable_shards, key=lambda s: s.index[1].start)
            assert [s.data.shape[1] for s in shards] == [2, 2], name  # the batch axis split over both devices
            assert np.array_equal(np.asarray(shards[1].data), tree[name][:, 2:]), name
    try:
        shard_batch({"x": np.zeros((3, 5))}, mesh)
    except ValueError as e:
        print(e)
""")


def test_shard_batch_splits_the_batch_axis_and_refuses_an_indivisible_batch():
    out = run_on_devices(SCRIPT, 2)
    assert "batch of 5 examples cannot be split over 2 devices; use a batch size divisible by 2" in out
