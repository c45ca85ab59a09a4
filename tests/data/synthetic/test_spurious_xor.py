import jax
import numpy as np
import pytest

from jaxmm.data.synthetic import spurious_xor

pytestmark = pytest.mark.usefixtures("unoptimised_compile")  # small programs: compiling is their cost


@pytest.fixture(scope="module")
def data():
    return spurious_xor.splits(0, 0.8, sizes={"test": 4000})


def _logreg_acc(x_train, y_train, x_test, y_test):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500).fit(x_train, y_train).score(x_test, y_test)


def test_sizes_and_labels(data):
    assert (len(data.train), len(data.val), len(data.test)) == (300, 120, 4000)
    assert set(np.unique(data.train.label)) == {0, 1}


def test_neither_modality_alone_predicts_y_on_test(data):
    for m in ("x0", "x1"):
        acc = _logreg_acc(data.train.inputs[m], data.train.label, data.test.inputs[m], data.test.label)
        assert acc < 0.56, (m, acc)


def test_xor_of_the_signal_blocks_is_the_label(data):
    b0 = data.test.inputs["x0"][:, :4].mean(1) > 0
    b1 = data.test.inputs["x1"][:, :4].mean(1) > 0
    assert np.mean((b0 ^ b1) == data.test.label) > 0.999


@pytest.mark.parametrize("alpha", [0.0, 0.4, 0.8, 1.0])
def test_spur_correlates_with_y_at_alpha_in_train_only(alpha):
    d = jax.device_get(spurious_xor.generate(jax.random.key(3), 20000, alpha))
    corr = np.corrcoef(d["x0"][:, 4], 2 * d["y"] - 1)[0, 1]
    assert abs(corr - alpha) < 0.02
    s = spurious_xor.splits(1, alpha, sizes={"test": 20000})
    assert abs(np.corrcoef(s.test.inputs["x0"][:, 4], s.test.label)[0, 1]) < 0.03


def test_oracle_masks_mark_the_signal_block(data):
    mask = data.train.meta["mask/x0"]
    assert mask[:, :4].all() and not mask[:, 4:].any()


def test_alpha_above_one_is_a_deterministic_shortcut():
    d = jax.device_get(spurious_xor.generate(jax.random.key(0), 100, 2.0))
    expected = np.broadcast_to(1.3 * 2.0 * (2 * d["y"][:, None] - 1), (100, 6))
    np.testing.assert_allclose(d["x0"][:, 4:10], expected, rtol=1e-6)


def _reference_generate(key, n, alpha):
    """The operation-by-operation jax form of the generator (each operation rounded on its own)."""
    import jax.numpy as jnp

    k_bits, k_x0, k_x1, k_s0, k_s1, k_spur = jax.random.split(key, 6)
    bits = jax.random.bernoulli(k_bits, 0.5, (n, 2)).astype(jnp.int32)
    y = bits[:, 0] ^ bits[:, 1]
    sign = 2.0 * bits - 1.0
    x0 = jax.random.normal(k_x0, (n, 64)).at[:, :4].set(2.2 * sign[:, :1] + 0.55 * jax.random.normal(k_s0, (n, 4)))
    x1 = jax.random.normal(k_x1, (n, 64)).at[:, :4].set(2.2 * sign[:, 1:] + 0.55 * jax.random.normal(k_s1, (n, 4)))
    noise_weight = jnp.sqrt(jnp.maximum(0.0, 1.0 - jnp.asarray(alpha, jnp.float32) ** 2))
    spur = alpha * (2.0 * y[:, None] - 1.0) + noise_weight * jax.random.normal(k_spur, (n, 6))
    return jax.device_get({"x0": x0.at[:, 4:10].set(1.3 * spur), "x1": x1, "y": y, "bits": bits})


@pytest.mark.parametrize("n, alpha", [(300, 0.0), (120, 0.2), (300, 0.6), (257, 1.0), (50, 2.0)])
def test_generate_is_bit_identical_to_the_operation_by_operation_jax_form(n, alpha):
    key = jax.random.key(n)
    got, want = spurious_xor.generate(key, n, alpha), _reference_generate(key, n, alpha)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v), k


@pytest.mark.parametrize("n", [120, 300, 30000])
def test_draws_rounded_up_to_a_few_sizes_are_the_draws_of_the_shape(n):
    key = jax.random.key(n + 7)
    for shape in ((n, 64), (n, 4), (n, 6)):
        got = np.asarray(spurious_xor._draw(jax.random.normal, key, shape))
        assert got.shape == shape
        np.testing.assert_array_equal(got.view(np.uint32), np.asarray(jax.random.normal(key, shape)).view(np.uint32))
    np.testing.assert_array_equal(spurious_xor._draw(jax.random.bernoulli, key, (n, 2), 0.5),
                                  jax.random.bernoulli(key, 0.5, (n, 2)))


def test_splits_are_the_generated_data_of_the_papers_data_seeds():
    # the test split is drawn in a second thread: the same values as drawing it here
    s = spurious_xor.splits(2, 0.4, sizes={"train": 50, "val": 20, "test": 30})
    for part, offset, alpha in ((s.train, 101, 0.4), (s.val, 151, 0.4), (s.test, 201, 0.0)):
        expected = spurious_xor.generate(jax.random.key(2 + offset), len(part), alpha)
        np.testing.assert_array_equal(part.inputs["x0"], expected["x0"])
        np.testing.assert_array_equal(part.inputs["x1"], expected["x1"])
        np.testing.assert_array_equal(part.label, expected["y"])
