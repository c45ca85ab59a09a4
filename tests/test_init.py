"""``import jaxmm`` is light; its subpackages load on first attribute access."""
import subprocess
import sys

import pytest

SUBPACKAGES = ("counterfactual", "data", "losses", "methods", "metrics", "models", "monitors", "tasks", "train",
               "transforms")


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout


def test_import_is_light():
    out = _run("import sys, jaxmm; print(sorted(m for m in sys.modules if m.split('.')[0] in "
               "('jax', 'flax', 'optax', 'jaxmm')))")
    assert out.strip() == "['jaxmm']"


def test_subpackage_attributes_load_lazily():
    out = _run("import sys, jaxmm\n"
               "tx = jaxmm.transforms.ogm_ge(('audio', 'visual'), labels=lambda p: p)\n"
               "print(type(tx).__name__, 'jaxmm.methods' in sys.modules)")
    assert out.split() == ["GradientTransformationExtraArgs", "False"]


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_subpackage_is_an_attribute(name):
    import importlib

    import jaxmm

    assert getattr(jaxmm, name) is importlib.import_module(f"jaxmm.{name}")
    assert name in dir(jaxmm)


def test_unknown_attribute_raises_attribute_error():
    import jaxmm

    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        jaxmm.nope  # noqa: B018
