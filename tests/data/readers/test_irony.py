"""Tests for the CREMA-D-Irony construction (methods.md §5.4)."""
import numpy as np
import pytest
from reader_fixtures import crema_names, write_crema_d

from jaxmm.data.readers import crema_d, irony
from jaxmm.data.types import ArrayDataset

OGM = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")


def labels_with_counts(counts, seed=0):
    labels = np.repeat(np.arange(6), counts)
    return np.random.default_rng(seed).permutation(labels)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0, 2.0])
def test_number_mutated_is_round_alpha_mean_count(alpha):
    labels = labels_with_counts([10, 8, 12, 6, 9, 15])  # n_bar = 10
    mutated, donors = irony.irony_assignment(labels, alpha, seed=7)
    assert len(mutated) == len(donors) == round(alpha * 10)
    assert len(set(mutated.tolist())) == len(mutated)


def test_k_is_clipped_to_split_size():
    labels = labels_with_counts([2, 2, 2, 2, 2, 2])
    mutated, _ = irony.irony_assignment(labels, 10.0, seed=0)
    assert len(mutated) == 12


def test_donors_contradict_and_are_not_self():
    labels = labels_with_counts([20, 15, 14, 13, 12, 11])
    mutated, donors = irony.irony_assignment(labels, 2.0, seed=3)
    for m, d in zip(mutated, donors):
        assert m != d
        assert OGM[labels[d]] in irony.CONTRADICTS[OGM[labels[m]]]
    happy = mutated[labels[mutated] == 1]
    assert set(labels[donors[labels[mutated] == 1]]) <= {2, 3, 4, 5} and len(happy)
    others = (labels[mutated] >= 2)
    assert set(labels[donors[others]]) == {1}


def test_same_seed_same_assignment_other_seed_differs():
    labels = labels_with_counts([30] * 6)
    a, b = irony.irony_assignment(labels, 1.0, 5), irony.irony_assignment(labels, 1.0, 5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], irony.irony_assignment(labels, 1.0, 6)[0])


def test_contradiction_map_follows_class_names_in_any_order():
    tfds = ("NEU", "HAP", "SAD", "ANG", "FEA", "DIS")
    labels = labels_with_counts([5] * 6)
    mutated, donors = irony.irony_assignment(labels, 2.0, 1, tfds)
    for m, d in zip(mutated, donors):
        assert tfds[labels[d]] in irony.CONTRADICTS[tfds[labels[m]]]


def fake_split(labels, class_names=OGM):
    n = len(labels)
    return ArrayDataset(inputs={"audio": np.arange(n, dtype=np.float32)[:, None].repeat(3, 1),
                                "visual": -np.arange(n, dtype=np.float32)[:, None]},
                        label=np.asarray(labels, np.int32), num_classes=6, name="fake", class_names=class_names)


def test_apply_irony_swaps_audio_keeps_video_and_relabels():
    labels = labels_with_counts([6, 5, 4, 5, 6, 4])
    split = fake_split(labels)
    out = irony.apply_irony(split, 1.0, seed=2)
    mutated = np.flatnonzero(out.meta["irony_donor"] >= 0)
    assert len(mutated) == round(len(labels) / 6) and len(out) == len(split)
    assert out.num_classes == 7 and out.class_names == OGM + ("IRONY",)
    np.testing.assert_array_equal(out.inputs["visual"], split.inputs["visual"])
    np.testing.assert_array_equal(out.label[mutated], 6)
    untouched = np.setdiff1d(np.arange(len(labels)), mutated)
    np.testing.assert_array_equal(out.label[untouched], labels[untouched])
    np.testing.assert_array_equal(out.inputs["audio"][untouched], split.inputs["audio"][untouched])
    donors = out.meta["irony_donor"][mutated]
    np.testing.assert_array_equal(out.inputs["audio"][mutated], split.inputs["audio"][donors])
    np.testing.assert_array_equal(out.meta["base_label"], labels)
    np.testing.assert_array_equal(split.label, labels)  # input untouched


def test_apply_irony_rejects_non_crema_splits():
    with pytest.raises(ValueError):
        irony.apply_irony(fake_split([0, 1], ("a", "b", "c", "d", "e", "f")), 1.0, 0)
    with pytest.raises(ValueError):
        irony.irony_assignment(np.zeros(3, int), -1.0, 0)


def test_load_crema_d_irony_on_fixture(tmp_path):
    write_crema_d(tmp_path, crema_names(), frames_per_clip=3)
    base = crema_d.load_crema_d(tmp_path, split="speaker_independent", num_frames=3, image_size=8)
    ironic = irony.load_crema_d_irony(tmp_path, alpha=1.0, seed=4, image_size=8)
    again = irony.make_irony_splits(base, alpha=1.0, seed=4)
    for b, s, s2 in zip((base.train, base.val, base.test), (ironic.train, ironic.val, ironic.test),
                        (again.train, again.val, again.test)):
        assert len(s) == len(b)
        mutated = np.flatnonzero(s.label == 6)
        assert len(mutated) == round(1.0 * np.bincount(b.label, minlength=6).mean())
        donors = s.meta["irony_donor"][mutated]
        # donor audio comes from the same split, the video stays the clip's own
        np.testing.assert_array_equal(s.inputs["audio"][mutated], b.inputs["audio"][donors])
        np.testing.assert_array_equal(s.inputs["visual"], b.inputs["visual"])
        for m, d in zip(mutated, donors):
            assert OGM[b.label[d]] in irony.CONTRADICTS[OGM[b.label[m]]]
        np.testing.assert_array_equal(s.label, s2.label)
        np.testing.assert_array_equal(s.inputs["audio"], s2.inputs["audio"])
