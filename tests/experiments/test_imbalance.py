import json

import numpy as np
import pytest
from _tiny import MODEL, OPT, tiny_splits, train_cfg

from jaxmm.experiments import imbalance as E
from jaxmm.methods import get_method
from jaxmm.metrics.probe import probe_accuracy
from jaxmm.train.batching import stack_runs
from jaxmm.train.loop import fit


def test_with_probe_logs_the_probe_accuracy_of_the_final_features():
    splits = tiny_splits()
    result = fit(E.with_probe(get_method("vanilla"), 3), [splits], [0, 1], MODEL, OPT, train_cfg(epochs=1))
    last = result.history[-1]
    train = result.trainer.outputs(result.state, stack_runs([splits.train] * 2), 64).features
    test = result.trainer.outputs(result.state, stack_runs([splits.test] * 2), 64).features
    for m in ("a", "b"):
        assert len(last[f"probe/val/{m}"]) == 2
        for r in range(2):
            want = probe_accuracy(train[m][r], splits.train.label, test[m][r], splits.test.label, 3, E.PROBE_L2)
            assert last[f"probe/test/{m}"][r] == pytest.approx(float(want))


def test_table_gap_and_utilisation_values():
    res = {"vanilla": {"test": [{"acc": 0.8, "probe/s": 0.5, "probe/w": 0.6, "acc/w": 0.7},
                                {"acc": 0.9, "probe/s": 0.5, "probe/w": 0.4, "acc/w": 0.7}],
                       "curves": {"s": [[0.25, 0.5]] * 2, "w": [[0.3, 0.6], [0.2, 0.4]]}},
           "unimodal[w]": {"test": [{"acc": 0.8, "probe/w": 0.8}, {"acc": 0.8, "probe/w": 0.8}],
                           "curves": {"w": [[0.4, 0.8]] * 2}}}
    text = E.table(res, ("s", "w"))
    vanilla = next(line for line in text.splitlines() if line.startswith("| vanilla |"))
    # fused 0.85 ± 0.05; probe w 0.5 ± 0.1; head w 0.7; gap w = 0.5 − 0.8; no unimodal[s] so no gap s
    assert vanilla.split(" | ")[1:] == ["0.850 ± 0.050", "0.500 ± 0.000", "0.500 ± 0.100", "—", "0.700 ± 0.000",
                                        "—", "-0.300 ± 0.100 |"]
    util = E.utilisation(res, ("s", "w"))
    np.testing.assert_allclose(util["vanilla"]["w"], [[0.375, 0.75], [0.25, 0.5]])
    assert "s" not in util["vanilla"] and list(util["unimodal[w]"]["w"][0]) == [0.5, 1.0]


def test_method_resolution():
    assert E.resolve_methods("vanilla,ogm_ge", ["ogm_ge", "vanilla"]) == ["vanilla", "ogm_ge"]
    with pytest.raises(SystemExit, match=r"\['nope'\] are not registered; registered: \['ogm_ge', 'vanilla'\]"):
        E.resolve_methods("vanilla,nope", ["vanilla", "ogm_ge"])
    with pytest.warns(UserWarning, match="not registered yet"):
        assert E.resolve_methods(None, ["unimodal", "vanilla", "redreg"]) == ["vanilla", "unimodal", "redreg"]


def test_avdigits_is_skipped_with_a_message_when_absent(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("JAXMM_FSDD_DIR", str(tmp_path))
    assert E.avdigits_available() is False
    assert f"skipping avdigits: JAXMM_FSDD_DIR={tmp_path} holds no" in capsys.readouterr().out


def test_smoke_run_writes_table_figure_and_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(E.PROTOCOLS, "small", {"epochs": 1, "sizes": {"train": 200, "val": 100, "test": 200},
                                              "avdigits_epochs": 2})
    E.main(["--methods", "vanilla,ensemble", "--seeds", "0", "--datasets", "synthetic",
            "--out-dir", str(tmp_path), "--figure-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| vanilla |" in out and "| ensemble |" in out and "weak 0.788, strong+weak 0.913" in out
    run = tmp_path / "imbalance"
    for f in ("summary.md", "results.json", "imbalance_synthetic.png"):
        assert (run / f).stat().st_size > 0
    assert (tmp_path / "imbalance_synthetic.png").exists()
    config = json.loads((run / "synthetic" / "vanilla" / "config.json").read_text())  # each run records its config
    assert config["dataset"] == "imbalance" and config["dataset_options"]["sizes"]["train"] == 200
    assert config["train"]["epochs"] == 1 and config["seeds"] == [0]
    with pytest.raises(FileExistsError, match="pass --overwrite"):  # a second invocation keeps the first's results
        E.main(["--methods", "vanilla", "--seeds", "0", "--datasets", "synthetic", "--out-dir", str(tmp_path)])
    res = json.loads((run / "results.json").read_text())["datasets"]["synthetic"]
    assert set(res["results"]) == {"vanilla", "ensemble"}
    assert res["bayes"]["strong+weak"] == pytest.approx(0.9132, abs=1e-4)
    van = res["results"]["vanilla"]
    assert np.asarray(van["curves"]["weak"]).shape == (1, 1)
    assert van["curves"]["weak"][0][-1] == pytest.approx(
        json.loads((run / "synthetic" / "vanilla" / "metrics.jsonl").read_text().splitlines()[-1])["probe/val/weak"][0])
    for t in (van["test"][0], res["results"]["ensemble"]["test"][0]):
        assert 0.0 <= t["probe/weak"] <= 1.0 and 0.0 <= t["acc"] <= 1.0 and t["acc/weak"] >= 0.0
    assert "| — |" in out  # no unimodal reference here: the gap columns stay empty
