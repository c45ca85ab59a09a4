"""ReconBoost: reconcilement (code and paper forms), GA detach quirk, rectification."""
import jax
import numpy as np
import pytest

from jaxmm.losses import reconboost as rb

LOGITS = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], np.float32)
OTHERS = np.array([[0.0, 3.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
LABELS = np.array([1, 0])


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def out():
    """Every quantity the tests check, from one compiled program."""
    def compute(logits, others, labels):
        prev = jax.numpy.zeros_like(logits)
        return dict(
            code=rb.reconcilement_loss(logits, others, labels, w1=5.0, w2=1.0),
            grad_others=jax.grad(lambda o: rb.reconcilement_loss(logits, o, labels).sum())(others),
            paper=rb.reconcilement_loss(logits, others, labels, form="paper", lam=0.5),
            masked=rb.reconcilement_loss(logits, others, labels, where=np.array([False, True])),
            ga=rb.ga_loss(logits, prev),
            ga_official=jax.grad(lambda l: rb.ga_loss(l, prev).sum())(logits),
            ga_fixed=jax.grad(lambda l: rb.ga_loss(l, prev, detach=False).sum())(logits),
            rectification=rb.rectification_loss([logits, others], labels, boost_rate=0.5),
            ensemble=rb.ensemble_logits([logits, others], 2.0))
    return jax.jit(compute)(LOGITS, OTHERS, LABELS)


def test_code_form_is_the_label_masked_boosting_loss(out):
    log_p, q, y = _log_softmax(LOGITS), np.exp(_log_softmax(OTHERS)), np.eye(3)[LABELS]
    expected = np.mean(-5.0 * y * log_p + 1.0 * y * q * log_p, axis=-1)
    np.testing.assert_allclose(out["code"], expected, rtol=1e-6)
    np.testing.assert_allclose(out["grad_others"], 0.0)   # the other learners are constants


def test_paper_form_is_ce_minus_kl(out):
    log_p, log_q = _log_softmax(LOGITS), _log_softmax(OTHERS)
    ce = -log_p[np.arange(2), LABELS]
    kl = (np.exp(log_q) * (log_q - log_p)).sum(-1)
    np.testing.assert_allclose(out["paper"], ce - 0.5 * kl, rtol=1e-5)
    assert out["masked"][0] == 0.0


def test_ga_detach_quirk(out):
    expected = ((np.exp(_log_softmax(LOGITS)) - 1 / 3) ** 2).mean(-1)
    np.testing.assert_allclose(out["ga"], expected, rtol=1e-5)
    np.testing.assert_allclose(out["ga_official"], 0.0)   # logged, no gradient, as in the code
    assert np.abs(out["ga_fixed"]).max() > 0.0


def test_rectification_is_ce_of_the_boosted_ensemble(out):
    ensemble = 0.5 * (LOGITS + OTHERS)
    np.testing.assert_allclose(out["rectification"], -_log_softmax(ensemble)[np.arange(2), LABELS],
                               rtol=1e-6)
    np.testing.assert_allclose(out["ensemble"], 2 * (LOGITS + OTHERS))


def test_bad_inputs():
    with pytest.raises(ValueError, match="`form` must be one of 'code', 'paper'"):
        rb.reconcilement_loss(LOGITS, OTHERS, LABELS, form="boost")
    with pytest.raises(ValueError, match="must match"):
        rb.reconcilement_loss(LOGITS, OTHERS[:, :2], LABELS)
    with pytest.raises(ValueError, match="one shape"):
        rb.ensemble_logits([LOGITS, OTHERS[:1]])
    with pytest.raises(ValueError, match="must match"):
        rb.ga_loss(LOGITS, OTHERS[:1])
