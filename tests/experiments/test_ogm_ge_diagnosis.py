import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.experiments import imbalance
from jaxmm.experiments import ogm_ge_diagnosis as E
from jaxmm.methods import Terms, get_method
from jaxmm.transforms.ogm_ge import ogm_ge_coefficients


def _signals(modality, scores):
    """The transform signals of ``slowing(modality)`` around an OGM-GE whose step reports ``scores``."""
    reported = Terms({}, signals={"scores": {m: jnp.float32(v) for m, v in scores.items()}, "alpha": 0.8})
    method = dataclasses.replace(get_method("ogm_ge"), terms=lambda model, batch, ctx: reported)
    return E.slowing(method, modality).terms(None, None, None).signals


def test_slowing_redirects_the_official_coefficient_to_the_named_modality():
    for scores in ({"strong": 3.0, "weak": 5.0}, {"strong": 5.0, "weak": 3.0}):
        signals = _signals("strong", scores)
        assert signals["alpha"] == 0.8  # the other signals pass through
        out = signals["scores"]
        assert float(out["strong"]) == 5.0 and float(out["weak"]) == 3.0
        # the same ratio 5/3 as the official rule, applied to `strong` (the first modality here)
        k = ogm_ge_coefficients(jnp.array([out["strong"], out["weak"]]), 0.8)
        np.testing.assert_allclose(k, [1.0 - np.tanh(0.8 * 5.0 / 3.0), 1.0], rtol=1e-6)
    # "frozen strong": at α = 20 any ratio >= 1 leaves k <= 1 − tanh(20) ≈ 8e-18 (float32: 0)
    assert float(ogm_ge_coefficients(jnp.array([1.0, 1.0]), E.FROZEN_ALPHA)[0]) < 1e-17


def test_slowing_rejects_methods_without_scores():
    with pytest.raises(ValueError, match="no gradient transformation"):
        E.slowing(get_method("vanilla"), "strong")
    with pytest.raises(ValueError, match=r"needs two modality scores including 'audio'"):
        _signals("audio", {"strong": 1.0, "weak": 2.0})


def test_no_redundancy_task_removes_only_the_weak_coarse_signal():
    default, clean = E.TASKS["default"], E.TASKS["no-redundancy"]
    assert clean.weak_snr == (0.0, default.weak_snr[1]) and clean.strong_snr == default.strong_snr
    # the weak modality alone then cannot tell the coarse class: Bayes = g_F(fine snr) / C
    fine_only = imbalance.imbalance.argmax_accuracy(default.weak_snr[1], default.num_fine) / default.num_coarse
    assert imbalance.imbalance.bayes_accuracy(clean, ("weak",)) == pytest.approx(fine_only)


def test_controlled_runs_and_their_hyperparameters():
    runs = E.controlled_runs("image", "audio")
    labels = list(runs)
    assert labels == ["unimodal[image]", "unimodal[audio]", "vanilla", *(f"ogm_ge α={a:g}" for a in E.ALPHAS),
                      "ogm (no noise)", "ogm_ge[slow audio]", "frozen audio"]
    assert E.OFFICIAL in labels
    hparams = {label: fields["hparams"] for label, (fields, _) in runs.items() if "hparams" in fields}
    assert hparams == {**{f"ogm_ge α={a:g}": {"alpha": a} for a in E.ALPHAS}, "frozen audio": {"alpha": 20.0}}
    for label in ("ogm (no noise)", "frozen audio"):
        assert runs[label][0]["method_options"] == {"generalization": False}
    wrapped = {label for label, (_, wrap) in runs.items() if wrap is not None}
    assert wrapped == {"ogm_ge[slow audio]", "frozen audio"}


def test_leading_share_table_values_and_alpha_selection():
    scores = {"strong": [[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]], "weak": [[2.0, 1.0, 3.0], [1.0, 1.0, 1.0]]}
    np.testing.assert_allclose(E.leading_share(scores, "weak"), [2 / 3, 0.0])
    val = [{"acc": 0.5}, {"acc": 0.7}]
    res = {"unimodal[weak]": {"test": [{"acc": 0.7, "probe/weak": 0.7}, {"acc": 0.7, "probe/weak": 0.8}],
                              "val": val, "curves": {}, "scores": {}},
           "ogm_ge α=0.8": {"test": [{"acc": 0.9, "probe/strong": 0.5, "probe/weak": 0.6},
                                     {"acc": 0.8, "probe/strong": 0.5, "probe/weak": 0.6}],
                            "val": val, "curves": {}, "scores": scores},
           "ogm_ge α=2": {"test": [{"acc": 0.9, "probe/strong": 0.5, "probe/weak": 0.6}] * 2,
                          "val": [{"acc": 0.8}] * 2, "curves": {}, "scores": {}}}
    row = next(line for line in E.table(res, ("strong", "weak"), "weak").splitlines()
               if line.startswith("| ogm_ge α=0.8 |"))
    # val 0.6 ± 0.1; fused 0.85 ± 0.05; no unimodal[strong] so only the weak gap = 0.6 − (0.7, 0.8);
    # weak leads in 2/3 and 0 of the epochs
    assert row.split(" | ")[1:] == ["0.600 ± 0.100", "0.850 ± 0.050", "0.500 ± 0.000", "0.600 ± 0.000",
                                    "-0.150 ± 0.050", "0.333 ± 0.333 |"]
    assert E.selected_alpha(res) == "ogm_ge α=2"  # validation 0.8 beats 0.6


def test_smoke_run_writes_tables_figure_and_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(imbalance.PROTOCOLS, "small", {"epochs": 1, "sizes": {"train": 128, "val": 64, "test": 64},
                                                       "avdigits_epochs": 1})
    monkeypatch.setattr(E, "TASKS", {"no-redundancy": E.TASKS["no-redundancy"]})
    monkeypatch.setattr(E, "ALPHAS", (0.3, 0.8, 5.0))
    full = E.controlled_runs
    kept = ("unimodal[weak]", *(f"ogm_ge α={a:g}" for a in E.ALPHAS))
    monkeypatch.setattr(E, "controlled_runs", lambda weak, strong: {
        label: run for label, run in full(weak, strong).items() if label in kept})
    E.main(["--seeds", "0", "--epochs", "1", "--datasets", "synthetic", "--out-dir", str(tmp_path),
            "--figure-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "no-redundancy task" in out and "| ogm_ge α=0.3 |" in out
    assert "α selected by validation accuracy: ogm_ge α=" in out
    run = tmp_path / "ogm_ge_diagnosis"
    for f in ("summary.md", "results.json", "ogm_ge_diagnosis.png"):
        assert (run / f).stat().st_size > 0
    assert (tmp_path / "ogm_ge_diagnosis.png").exists()
    res = json.loads((run / "results.json").read_text())["results"]["no-redundancy"]
    assert set(res) == set(kept)
    assert np.asarray(res[E.OFFICIAL]["scores"]["weak"]).shape == (1, 1)
    assert 0.0 <= res[E.OFFICIAL]["scores"]["weak"][0][0] <= 64.0  # a batch sum of probabilities, batch 64

    def coefficient_sum(label):  # every step slows one modality by k(α) and leaves the other at 1
        record = json.loads((run / "no-redundancy" / label / "metrics.jsonl").read_text().splitlines()[-1])
        return record["train/coef/strong"][0] + record["train/coef/weak"][0]

    assert coefficient_sum("ogm_ge α=5") == pytest.approx(1.0, abs=1e-3)  # k <= 1 − tanh(5) ≈ 1e-4
    assert coefficient_sum("ogm_ge α=0.3") > 1.2  # k = 1 − tanh(0.3 ρ) is large for ratios ρ near 1


def test_unknown_dataset_is_refused():
    with pytest.raises(SystemExit, match="unknown dataset"):
        E.main(["--datasets", "cifar"])
