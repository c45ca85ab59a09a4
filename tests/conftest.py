"""Fixtures shared by every test folder."""
import pytest


@pytest.fixture
def compilation_cache(tmp_path):
    """A persistent compilation cache in ``tmp_path`` for one test, then none again.

    A second fit of the same programs in the test's process (a resume, an extended run) loads the
    executables the first one compiled instead of compiling them again; the results are the same
    programs' results. Yields the cache folder (set ``JAX_COMPILATION_CACHE_DIR`` to it, with
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0``, to share it with a subprocess).
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    before = {name: getattr(jax.config, name) for name in names}
    folder = tmp_path / "xla-cache"
    cc.reset_cache()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    try:
        yield folder
    finally:
        cc.reset_cache()
        for name, value in before.items():
            jax.config.update(name, value)


@pytest.fixture(scope="module")
def unoptimised_compile():
    """Compiles the programs of a module's tests with most XLA optimisations off, then optimised again.

    For tests of plumbing (configs, data formats, resume, sharding) whose cost is compilation and
    whose programs run a few steps: XLA compiles them about a third faster, and they compute the
    same values up to float rounding. A subprocess gets the same with
    ``JAX_DISABLE_MOST_OPTIMIZATIONS=1`` in its environment.
    """
    import jax

    name = "jax_disable_most_optimizations"
    before = jax.config.read(name)
    jax.config.update(name, True)
    try:
        yield
    finally:
        jax.config.update(name, before)
