"""The run's pictures: what acc/<modality> is, utilisation and gap values, method logs, legends and epochs."""
import json

import numpy as np
import pytest

from jaxmm.methods import get_method
from jaxmm.models.multimodal import ModelConfig
from jaxmm.train import diagnostics as dg
from jaxmm.train.loop import fit

from .conftest import REFERENCE
from ._tiny import MODEL, OPT, tiny_splits, train_cfg


def test_modality_source_names_what_acc_per_modality_is():
    deep_heads = ModelConfig(encoder_hidden=(8,), unimodal_hidden=(8,))
    cases = [
        (get_method("vanilla"), MODEL, dg.HEAD),
        (get_method("ogm_ge"), MODEL, dg.SLICE),
        (get_method("ogm_ge", scores="heads"), MODEL, dg.LINEAR_DETACHED),  # one Linear on stop-gradient features
        (get_method("ogm_ge", scores="heads"), deep_heads, dg.DETACHED),
        (get_method("ogm_ge", scores="heads"), lambda rngs: None, dg.DETACHED),  # a model factory: depth unknown
        (get_method("inforeg"), MODEL, dg.SLICE),
        (get_method("inforeg", unimodal="heads"), MODEL, dg.HEAD),
        (get_method("agm"), MODEL, dg.SHAPLEY),
        (get_method("pmr"), MODEL, dg.LINEAR_DETACHED),
        (get_method("btw"), MODEL, dg.LINEAR_DETACHED),
        (get_method("btw", apply="loss"), MODEL, dg.HEAD),
        (get_method("vanilla"), ModelConfig(detach_unimodal=True), dg.LINEAR_DETACHED),
        (get_method("dmil"), MODEL, "per-modality output of dmil"),
    ]
    assert [dg.modality_source(method, model) for method, model, _ in cases] == [want for _, _, want in cases]


def test_utilisation_and_gap_are_accuracy_over_and_below_the_reference(logged_run):
    history = logged_run.metrics
    acc = dg.modality_curves(history, "val/acc/", ["a", "b"])
    by_hand = {m: np.array([[r[f"val/acc/{m}"][run] for run in (0, 1)] for r in history]) for m in "ab"}
    np.testing.assert_array_equal(acc["a"], by_hand["a"])
    np.testing.assert_allclose(dg.utilisation(acc, REFERENCE)["a"], by_hand["a"] / 0.8)
    np.testing.assert_allclose(dg.gap(acc, REFERENCE)["b"], 0.5 - by_hand["b"])
    assert dg.utilisation(acc, {"a": 0.8}).keys() == {"a"}  # only the referenced modalities
    panels = dg.modality_panels(history, ["a", "b"], dg.SLICE, "acc", REFERENCE)
    assert [p.title.split("\n")[0] for p in panels] == [
        "val acc per modality: fused-head slice", "utilisation (fused-head slice):", "gap (fused-head slice):"]
    assert panels[0].hlines == REFERENCE
    np.testing.assert_allclose(panels[1].series["b"], by_hand["b"] / 0.5)
    np.testing.assert_allclose(panels[2].series["a"], 0.8 - by_hand["a"])
    assert len(dg.modality_panels(history, ["a", "b"], dg.SLICE, "acc")) == 1  # no reference: accuracy alone


def test_linear_probes_logged_by_a_hook_get_their_own_row():
    history = [{"epoch": e, "val/acc/a": [0.5], "probe/val/a": [0.6 + e / 10]} for e in (1, 2)]
    panels = dg.modality_panels(history, ["a"], dg.HEAD, "acc", {"a": 0.8})
    assert [p.title.split("\n")[0] for p in panels][3:] == [
        f"val acc per modality: {dg.PROBE}", f"utilisation ({dg.PROBE}):", f"gap ({dg.PROBE}):"]
    np.testing.assert_allclose(panels[4].series["a"][:, 0], [0.7 / 0.8, 0.8 / 0.8])


def test_method_logs_group_every_coefficient_and_per_step_log():
    record = {"epoch": 1, "train/loss": [1.0], "train/term/ce": [1.0], "train/coef/a": [0.5], "train/coef/b": [1.0],
              "train/grad_norm/ce": [2.0], "train/grad_norm/uni_ce/a": [3.0], "train/similarity": [0.4],
              "dnr/strength/a": [0.1], "stage": [1], "val/acc": [0.5], "trainset/acc": [0.5], "probe/val/a": [0.5]}
    assert dg.method_logs([record, {**record, "train/gate/R": [0.2], "train/gate/S": [0.8]}], ["a", "b"]) == {
        "train/coef": {"a": "train/coef/a", "b": "train/coef/b"}, "train/grad_norm": {"ce": "train/grad_norm/ce"},
        "train/grad_norm/uni_ce": {"a": "train/grad_norm/uni_ce/a"}, "train/similarity": {"": "train/similarity"},
        "dnr/strength": {"a": "dnr/strength/a"}, "stage": {"": "stage"},
        "train/gate": {"R": "train/gate/R", "S": "train/gate/S"}}  # keys logged at some epochs only count too


def test_a_fit_draws_every_figure_with_seed_legends_and_whole_epochs(logged_run):
    for name in ("curves.png", "modalities.png", "method_logs.png"):
        assert (logged_run.path / name).read_bytes()[:4] == b"\x89PNG"
    history = logged_run.metrics
    assert dg.method_logs(history, ["a", "b"]) == {"train/coef": {"a": "train/coef/a", "b": "train/coef/b"},
                                                  "train/score": {"a": "train/score/a", "b": "train/score/b"}}
    panels = dg.log_panels(history, ["a", "b"])
    np.testing.assert_array_equal(panels[0].series["b"], [r["train/coef/b"] for r in history])
    fig = dg.draw_panels(panels, [r["epoch"] for r in history], ["seed 0", "seed 1"], title="ogm_ge")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["seed 0", "seed 1"]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]  # a line style per modality
    assert len(ax.get_lines()) == 4  # 2 modalities x 2 runs
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() and t >= 1 for t in ticks)
    results = json.loads((logged_run.path / "results.json").read_text())
    assert [r["selected_epoch"] for r in results["runs"]] == [3, 3]  # select="last": the 3rd of 3 epochs


def test_a_reference_that_cannot_be_compared_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"^train.unimodal_reference names \['c'\], not modalities of this data "
                                         r"\['a', 'b'\]; name its modalities$"):
        fit(get_method("vanilla"), [tiny_splits()], [0], MODEL, OPT, train_cfg(unimodal_reference={"c": 0.5}),
            run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # refused before the run folder was claimed
    with pytest.raises(ValueError, match="compares accuracies, but this is a regression task; unset it"):
        dg.check_reference({"a": 0.5}, ["a"], "regression")
