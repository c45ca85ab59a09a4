import numpy as np
import pytest

from jaxmm.metrics.synergy_subset import synergy_subset

# Hand-worked: 6 test examples, 2 modalities x 3 seeds; W = wrong.
#           ex:   0  1  2  3  4  5
# labels          1  0  1  0  1  0
# video seeds:    W  W  W  .  W  W      (seed 0)
#                 W  W  .  .  W  W      (seed 1)
#                 W  .  .  .  W  W      (seed 2)
# text seeds:     W  W  W  W  .  W
#                 W  W  W  W  W  .
#                 W  .  W  W  W  .
# all: only example 0 (every one of the six wrong).
# majority (>= 2 of 3 per modality): video wrong on 0, 1, 4, 5; text on 0, 1, 2, 3, 4 -> 0, 1, 4.
LABELS = np.array([1, 0, 1, 0, 1, 0])
WRONG = {"video": [[1, 1, 1, 0, 1, 1], [1, 1, 0, 0, 1, 1], [1, 0, 0, 0, 1, 1]],
         "text": [[1, 1, 1, 1, 0, 1], [1, 1, 1, 1, 1, 0], [1, 0, 1, 1, 1, 0]]}


def preds_of(wrong):
    return {m: [np.where(np.asarray(w, bool), 1 - LABELS, LABELS) for w in ws] for m, ws in wrong.items()}


def test_both_rules_on_the_hand_example():
    preds = preds_of(WRONG)
    np.testing.assert_array_equal(synergy_subset(preds, LABELS), [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(synergy_subset(preds, LABELS, "majority"), [1, 1, 0, 0, 1, 0])


def test_majority_tie_is_not_wrong_and_scores_are_argmaxed():
    # two seeds per modality: 1 of 2 wrong is a tie (not a majority), 2 of 2 is
    labels = np.array([0, 2, 1])
    a = [np.array([1, 2, 0]), np.array([1, 0, 0])]  # wrong: [1,0,1] and [1,1,1]
    logits = np.eye(3)[[2, 1, 1]] * 5.0 - 1.0  # argmax [2, 1, 1] -> wrong [1, 1, 0]
    b = [logits, np.array([1, 1, 0])]  # wrong [1, 1, 1]
    np.testing.assert_array_equal(synergy_subset({"a": a, "b": b}, labels, "majority"), [1, 0, 0])
    np.testing.assert_array_equal(synergy_subset({"a": a, "b": b}, labels, "all"), [1, 0, 0])
    # a binary logit [N, 1]: class = logit > 0
    np.testing.assert_array_equal(synergy_subset({"a": [np.array([[0.3], [-0.2]])]}, np.array([0, 0])), [1, 0])


def test_agrees_with_a_plain_loop_on_random_predictions():
    rng = np.random.default_rng(0)
    n, seeds = 200, 5
    labels = rng.integers(0, 3, n)
    preds = {m: [rng.integers(0, 3, n) for _ in range(seeds)] for m in ("x", "y", "z")}
    for rule in ("all", "majority"):
        want = [all(sum(p[i] != labels[i] for p in ps) > (seeds / 2 if rule == "majority" else seeds - 1)
                    for ps in preds.values()) for i in range(n)]
        np.testing.assert_array_equal(synergy_subset(preds, labels, rule), want)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown rule 'any'"):
        synergy_subset({"a": [LABELS]}, LABELS, "any")
    with pytest.raises(ValueError, match="at least one modality"):
        synergy_subset({}, LABELS)
    with pytest.raises(ValueError, match="'a' has no predictions"):
        synergy_subset({"a": []}, LABELS)
    with pytest.raises(ValueError, match="has 5 examples, the labels 6"):
        synergy_subset({"a": [LABELS[:5]]}, LABELS)
