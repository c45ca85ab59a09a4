"""jaxmm.train.shared_jit: identical programs compiled once per process."""
import threading

import jax
import jax.numpy as jnp
import numpy as np

from jaxmm.train.shared_jit import SharedJit


def _compiled(fn: SharedJit):
    (entry,) = fn._compiled.values()
    return entry[0]


def test_functions_that_differ_in_empty_containers_share_one_program():
    one = SharedJit(lambda state, x: ({"y": jnp.tanh(x) * state["w"], "extra": {}}))
    two = SharedJit(lambda state, x: ({"y": jnp.tanh(x) * state["w"], "extra": {"masking": {}}}))
    x, w = jnp.arange(6.0).reshape(2, 3), jnp.float32(2.0)
    got_one, got_two = one({"w": w}, x), two({"w": w, "none": {}}, x)
    assert _compiled(one) is _compiled(two)
    want = np.tanh(np.arange(6.0).reshape(2, 3)) * 2.0
    np.testing.assert_allclose(got_one["y"], want, rtol=1e-6)
    np.testing.assert_array_equal(got_two["y"], got_one["y"])
    assert got_one["extra"] == {} and got_two["extra"] == {"masking": {}}  # each keeps its own result tree


def test_a_new_shape_or_a_different_program_compiles_anew():
    square = SharedJit(lambda x: x * x)
    assert float(square(jnp.float32(3.0))) == 9.0
    np.testing.assert_array_equal(square(jnp.arange(3.0)), [0.0, 1.0, 4.0])
    assert len(square._compiled) == 2
    cube = SharedJit(lambda x: x * x * x)
    assert float(cube(jnp.float32(2.0))) == 8.0
    assert _compiled(cube) is not next(iter(square._compiled.values()))[0]


def test_threads_compiling_the_same_program_at_once_get_one():
    fns = [SharedJit(lambda x: jnp.sin(x) + jnp.cos(x) * 1.25) for _ in range(3)]
    x = jnp.linspace(0.0, 1.0, 7)
    outs = [None] * 3

    def call(i):
        outs[i] = fns[i](x)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _compiled(fns[0]) is _compiled(fns[1]) is _compiled(fns[2])
    np.testing.assert_allclose(outs[2], np.sin(np.linspace(0.0, 1.0, 7)) + np.cos(np.linspace(0.0, 1.0, 7)) * 1.25,
                               rtol=1e-6)
    np.testing.assert_array_equal(outs[0], jax.jit(lambda x: jnp.sin(x) + jnp.cos(x) * 1.25)(x))


def test_under_a_transformation_it_is_plain_jit():
    double = SharedJit(lambda x: {"y": 2 * x})
    assert jax.eval_shape(double, jax.ShapeDtypeStruct((3,), jnp.float32))["y"].shape == (3,)
    np.testing.assert_array_equal(jax.jit(lambda x: double(x)["y"] + 1)(jnp.ones(2)), [3.0, 3.0])
    assert not double._compiled  # nothing compiled through the shared path


def test_programs_that_differ_only_in_constants_or_callbacks_do_not_share():
    x = jnp.arange(3.0)
    first, second = np.float32([1.0, 2.0, 3.0]), np.float32([4.0, 5.0, 6.0])
    plus_first, plus_second = SharedJit(lambda v: v + first), SharedJit(lambda v: v + second)  # same jaxpr text
    np.testing.assert_array_equal(plus_first(x), [1.0, 3.0, 5.0])
    np.testing.assert_array_equal(plus_second(x), [4.0, 6.0, 8.0])
    assert _compiled(plus_first) is not _compiled(plus_second)

    def through(fn):
        return SharedJit(lambda v: jax.pure_callback(fn, jax.ShapeDtypeStruct(v.shape, v.dtype), v))

    sine, cosine = through(lambda v: np.sin(v)), through(lambda v: np.cos(v))  # their jaxprs print alike
    np.testing.assert_allclose(sine(x), np.sin(np.arange(3.0)), rtol=1e-6)
    np.testing.assert_allclose(cosine(x), np.cos(np.arange(3.0)), rtol=1e-6)


def test_a_program_outlives_its_holder_among_the_recent_ones():
    import gc
    import weakref

    from jaxmm.train import shared_jit

    first = SharedJit(lambda x: jnp.exp(x) - 0.5)
    first(jnp.ones(4))
    program = _compiled(first)
    del first
    gc.collect()
    again = SharedJit(lambda x: jnp.exp(x) - 0.5)  # a later trainer, after the first one is gone
    np.testing.assert_allclose(again(jnp.ones(4)), np.exp(np.ones(4)) - 0.5, rtol=1e-6)
    assert _compiled(again) is program
    kept = weakref.ref(program)
    del again, program
    for i in range(shared_jit.KEEP_RECENT):  # newer programs push it out; then nothing holds it
        SharedJit(lambda x, i=i: x * (i + 2))(jnp.ones(4))
    gc.collect()
    assert kept() is None and len(shared_jit._recent) == shared_jit.KEEP_RECENT  # memory stays bounded


def test_compiler_options_are_part_of_the_key():
    plain = SharedJit(lambda x: jnp.sqrt(x) + 1.0)
    fast = SharedJit(lambda x: jnp.sqrt(x) + 1.0, {"xla_backend_optimization_level": 1})
    np.testing.assert_array_equal(plain(jnp.arange(4.0)), fast(jnp.arange(4.0)))
    assert _compiled(plain) is not _compiled(fast)
