"""Per-example loss functions: each returns one value per example; the caller reduces."""
from jaxmm.losses.ce import (
    as_categorical,
    classification_loss,
    sigmoid_cross_entropy,
    softmax_cross_entropy,
    true_class_probability,
)
from jaxmm.losses.kl import (
    bernoulli_kl,
    bernoulli_kl_to_half,
    categorical_kl,
    categorical_kl_to_uniform,
    gaussian_kl,
    gaussian_kl_to_standard,
    kl_to_reference,
)
from jaxmm.losses.regression import l1_loss, mse_loss
from jaxmm.losses._common import l2_normalize
