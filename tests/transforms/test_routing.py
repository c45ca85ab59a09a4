"""Every transformation that routes by group label refuses, at init, a group that labels no parameter."""
import re

import jax
import optax
import pytest

from jaxmm.transforms import agm, inforeg, mla, mmpareto, ogm_ge, redreg

from .contract import group_labels, random_tree

AUDIO_VIDEO = ("audio", "video")  # the parameters' groups are audio, visual, fusion, head, other
PRESENT = r"the labels present are \['audio', 'fusion', 'head', 'other', 'visual'\]"


@pytest.mark.parametrize("name, make, what, missing", [
    ("ogm_ge", lambda: ogm_ge(AUDIO_VIDEO, labels=group_labels), "modalities", "'video'"),
    ("agm", lambda: agm(AUDIO_VIDEO, labels=group_labels, mode="groups"), "modalities", "'video'"),
    ("agm", lambda: agm(("audio", "visual"), labels=group_labels, head_label="fused"), "head_label",
     "'fused'"),
    ("inforeg", lambda: inforeg(AUDIO_VIDEO, labels=group_labels), "modalities", "'video'"),
    ("redreg", lambda: redreg(("video", "text"), labels=group_labels), "modalities", "'video', 'text'"),
    ("mla", lambda: mla(8, labels=group_labels, head_label="shared_head"), "head_label", "'shared_head'"),
    ("mmpareto", lambda: mmpareto({"audio": (0, 1), "video": (0, 2)}, labels=group_labels), "group_terms",
     "'video'"),
])
def test_group_without_parameters_is_refused_at_init(name, make, what, missing):
    tx = make()  # the factory cannot know the parameters yet
    with pytest.raises(ValueError) as info:
        tx.init(random_tree(0))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: no parameter is labelled {missing} (named in `{what}`); ")
    assert re.search(PRESENT, message)
    assert "label each group's parameters with its name" in message


def test_agm_logits_mode_does_not_route_by_modality():
    """In "logits" mode only the head label matters (the clipping rule reads the head)."""
    agm(AUDIO_VIDEO, labels=group_labels, head_label="head").init(random_tree(0))
    agm(AUDIO_VIDEO, labels=group_labels, clip_threshold=None, head_label="fused").init(random_tree(0))


def test_masked_groups_count_as_absent():
    """Inside optax.partition a transformation sees only its own groups (the rest are MaskedNodes)."""
    to_tx = lambda tree: {k: jax.tree.map(lambda _, k=k: "rest" if k == "visual" else "tx", v)
                          for k, v in tree.items()}
    part = optax.partition({"tx": ogm_ge(("audio", "visual"), labels=group_labels),
                            "rest": optax.identity()}, to_tx)
    with pytest.raises(ValueError, match="no parameter is labelled 'visual'"):
        part.init(random_tree(0))
