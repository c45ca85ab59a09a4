import json

import jax
import numpy as np
import pytest

from jaxmm.experiments import interactions
from jaxmm.data.types import ArrayDataset
from jaxmm.data.synthetic import pid_xor
from jaxmm.metrics import pid

CORNERS = {"unique1": (1.0, 0.0, 0.0, 0.0), "redundancy": (0.0, 0.0, 1.0, 0.0), "synergy": (0.0, 0.0, 0.0, 1.0)}


_generate = jax.jit(pid_xor.generate, static_argnums=1)


def _raw(probs, n=2000, seed=0):
    return jax.device_get(_generate(jax.random.key(seed), n, np.asarray(probs, np.float32)))


@pytest.mark.parametrize("atom", sorted(CORNERS))
def test_pid_of_generator_codes_recovers_the_planted_corner(atom):
    raw = _raw(CORNERS[atom])
    result = pid.pid_from_samples(interactions.pid_xor_codes(raw["x0"], 0), interactions.pid_xor_codes(raw["x1"], 1),
                                  np.asarray(raw["y"], np.int64))
    for name, value in result._asdict().items():   # 1 bit in the planted atom, 0 elsewhere
        assert value == pytest.approx(1.0 if name == atom else 0.0, abs=0.01), (name, result)


def test_pid_of_a_mixture_matches_its_realised_source_fractions():
    raw = _raw((0.3, 0.0, 0.3, 0.4), seed=1)
    codes = [interactions.pid_xor_codes(raw[m], i) for i, m in enumerate(("x0", "x1"))]
    result = pid.pid_from_samples(*codes, np.asarray(raw["y"], np.int64))
    fractions = np.bincount(raw["source"], minlength=4) / len(raw["y"])   # u1, u2, red, syn
    np.testing.assert_allclose([result.unique1, result.unique2, result.redundancy, result.synergy], fractions,
                               atol=0.02)


def test_generator_codes_name_the_active_block_and_the_latent_sign():
    raw = _raw((0.0, 0.0, 0.0, 1.0))
    codes = interactions.pid_xor_codes(raw["x0"], 0)
    b0 = (raw["y"] == 0) == (interactions.pid_xor_codes(raw["x1"], 1) == 6)   # b0 = y xor b1
    np.testing.assert_array_equal(codes, 5 + b0)   # synergy block (b = 2): 1 + 2*2 + sign(b0)
    with pytest.raises(ValueError, match="modality must be 0"):
        interactions.pid_xor_codes(raw["x0"], 2)


def test_kmeans_codes_keep_the_planted_atom_dominant():
    # The generic estimate (no generator knowledge) is biased low but still names the corner.
    for atom, probs in CORNERS.items():
        raw = _raw(probs)
        inputs = {m: (raw[m] - raw[m].mean(0)) / raw[m].std(0) for m in ("x0", "x1")}
        result = interactions.kmeans_pid(ArrayDataset(inputs, np.asarray(raw["y"]), 2))
        assert max(result._asdict(), key=result._asdict().get) == atom and getattr(result, atom) > 0.7, result


def test_method_list_defaults_and_errors(monkeypatch, capsys):
    monkeypatch.setitem(interactions.METHODS, "not-yet", ("not_registered_yet", {}))
    defaults = interactions.resolve_methods("")
    assert "not-yet" not in defaults and {"vanilla", "ensemble", "synib-random"} <= set(defaults)
    assert "not-yet" in capsys.readouterr().out
    assert interactions.resolve_methods("vanilla,unimodal") == ["vanilla", "unimodal"]  # any registered name
    with pytest.raises(SystemExit, match="unknown method"):
        interactions.resolve_methods("vanila")
    with pytest.raises(SystemExit, match="not registered"):
        interactions.resolve_methods("not-yet")
    with pytest.raises(SystemExit, match="unknown dataset"):
        interactions.parse_args(["--datasets", "mnist"])


def test_tiny_run_tables_ensemble_synergy_and_probes(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(interactions.METHODS, "no-heads", ("vanilla", {"unimodal_heads": False}))

    def missing(name, seed, **options):
        raise FileNotFoundError("no recordings in /nowhere")

    monkeypatch.setattr(interactions, "load_dataset", missing)
    interactions.main(["--width", "8", "--epochs", "1", "--seeds", "0", "--p-syn", "0.2", "--methods",
                       "ensemble,no-heads", "--out-dir", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "avdigits skipped" in printed and "PID of the datasets" in printed
    out = tmp_path / "interactions-small"
    results = json.loads((out / "results.json").read_text().replace("NaN", "null"))
    runs = results["pid_xor"]
    assert set(runs) == {"ensemble", "no-heads"} and len(runs["ensemble"]) == 1
    for r in runs["ensemble"].values():   # binary task: soft voting cannot beat both heads
        assert r["synergy"] == 0.0 and 0.0 <= r["synergy/probe"] <= 1.0
    for r in runs["no-heads"].values():   # no heads: NaN there, the probes still measure synergy
        assert r["synergy"] is None and 0.0 <= r["synergy/probe"] <= 1.0 and "acc/probe/x0" in r
    generator = results["pid"]["PID-XOR p_syn=0.2 (generator)"]
    assert all(abs(e["synergy"] - 0.2) < 0.05 and e["unique2"] < 0.01 for e in generator)
    assert (out / "interactions.png").exists() and "synergy (probes)" in (out / "summary.md").read_text()
