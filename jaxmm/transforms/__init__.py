"""Gradient-level methods as optax ``GradientTransformationExtraArgs`` (one method per module)."""
from jaxmm.transforms.agm import agm
from jaxmm.transforms.dnr import reinit
from jaxmm.transforms.inforeg import inforeg
from jaxmm.transforms.mla import mla
from jaxmm.transforms.mmpareto import mmpareto
from jaxmm.transforms.ogm_ge import ogm_ge
from jaxmm.transforms.redreg import redreg
