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


def test_get_method_records_info_and_the_registry_replaces_with_a_warning():
    from jaxmm.methods import Method, MethodInfo, Terms, register
    from jaxmm.methods import registry

    method = get_method("synib", mask="oracle")
    assert method.name == "synib" and method.info.name == "synib"
    summary = registry._FACTORIES["synib"].__doc__.strip().splitlines()[0]
    assert method.info.summary == summary and summary.startswith("SynIB")
    assert method.info.options == {**options_of("synib"), "mask": "oracle"}
    assert get_method("synib").info.options["mask"] == "random"
    assert get_method("vanilla").info == MethodInfo("vanilla", available()["vanilla"], {"unimodal_heads": True})

    original = registry._FACTORIES["vanilla"]
    try:
        def replacement(flag: bool = False) -> Method:
            """A stand-in for vanilla.

            More text that is not the summary.
            """
            return Method(terms=lambda model, batch, ctx: Terms({}), term_weights=lambda ctx: {})

        with pytest.warns(UserWarning, match="'vanilla' was registered before"):
            register("vanilla")(replacement)
        replaced = get_method("vanilla", flag=True)
        assert replaced.info == MethodInfo("vanilla", "A stand-in for vanilla.", {"flag": True})
        with pytest.raises(ValueError, match="no option"):
            get_method("vanilla", unimodal_heads=False)
    finally:
        registry._FACTORIES["vanilla"] = original
    assert get_method("vanilla").info.options == {"unimodal_heads": True}

    try:
        register("not_a_method")(lambda: {"terms": None})
        with pytest.raises(TypeError, match="returned dict, not a Method"):
            get_method("not_a_method")
    finally:
        registry._FACTORIES.pop("not_a_method", None)
    assert "not_a_method" not in available()
