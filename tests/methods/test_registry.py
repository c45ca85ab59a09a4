import pytest

from jaxmm.methods import available, get_method, options_of


def test_registry_lists_the_foundation_methods():
    assert {"vanilla", "unimodal", "ensemble", "synib", "masking_control"} <= set(available())
    assert options_of("synib")["mask"] == "random"


def test_unknown_method_and_option_messages():
    with pytest.raises(ValueError, match="available methods: .*synib"):
        get_method("synlb")
    with pytest.raises(ValueError, match="no option"):
        get_method("synib", masks="random")
    with pytest.raises(ValueError, match="modality="):
        get_method("unimodal")
