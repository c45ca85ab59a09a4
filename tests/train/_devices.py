"""Checks that need several devices: a Python script run in a subprocess on simulated CPU devices."""
import os
import subprocess
import sys
import textwrap


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


# Prepended to a device script: ``check_per_device`` compares a function of batch rows computed per device
# (``jax.shard_map`` over every device, inside ``batch_reduce.per_device``) with the whole-batch computation.
GRADIENT_CHECK = textwrap.dedent("""
    def check_per_device(terms, args, in_specs, argnums, rtol=1e-5, atol=1e-6):
        # terms(*args) -> per-row arrays; they and the gradient of sum(sin(terms)) w.r.t. args[argnums]
        # must equal the one-device values
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from jaxmm import batch_reduce as br
        mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))

        def local(*a):
            with br.per_device("data"):
                return terms(*a)

        def with_grads(fn):
            total = lambda *a: sum(jnp.sum(jnp.sin(t)) for t in fn(*a))
            return jax.jit(lambda *a: (fn(*a), jax.grad(total, argnums=argnums)(*a)))

        sharded = jax.shard_map(local, mesh=mesh, in_specs=in_specs, out_specs=P("data"))
        put = [jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(args, in_specs)]
        got, want = with_grads(sharded)(*put), with_grads(terms)(*args)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol), got, want)
""")
