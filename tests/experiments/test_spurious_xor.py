import json
import os

from jaxmm.experiments import spurious_xor


def test_one_tiny_sweep_writes_table_and_figure(tmp_path, capsys):
    spurious_xor.main(["--epochs", "2", "--alphas", "0.8", "--seeds", "0", "--methods", "vanilla,synib-oracle",
                       "--out-dir", str(tmp_path), "--compile-cache", ""])
    out = capsys.readouterr().out
    assert "| vanilla |" in out and "| synib-oracle |" in out
    for f in ("spurious_xor.png", "summary.md", "results.json"):
        assert (tmp_path / "spurious-xor" / f).exists()
    for name in ("vanilla", "synib-oracle"):  # the runs keep their records, not their own figures
        files = set(os.listdir(tmp_path / "spurious-xor" / name))
        assert {"metrics.jsonl", "results.json"} <= files and not any(f.endswith(".png") for f in files)


def test_methods_trained_side_by_side_give_the_results_of_one_at_a_time(tmp_path, compilation_cache,
                                                                         unoptimised_compile):
    # The fixture's cache serves the second invocation the programs the first compiled.
    args = ["--epochs", "1", "--alphas", "0,2", "--seeds", "0", "--methods", "synib-random,vanilla",
            "--compile-cache", ""]
    spurious_xor.main([*args, "--out-dir", str(tmp_path / "threads"), "--workers", "2"])
    spurious_xor.main([*args, "--out-dir", str(tmp_path / "serial"), "--workers", "1"])
    threads, serial = (json.loads((tmp_path / d / "spurious-xor" / "results.json").read_text())
                       for d in ("threads", "serial"))
    assert threads == serial
    assert list(threads["test_acc"]) == ["synib-random", "vanilla"]  # the order asked for, not the start order
    assert list(threads["test_acc"]["vanilla"]) == ["0.0", "2.0"]


def test_default_workers_is_one_per_core_at_most_one_per_method(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert spurious_xor.default_workers(["vanilla"]) == 1
    assert spurious_xor.default_workers(list(spurious_xor.METHODS)) == 2
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert spurious_xor.default_workers(list(spurious_xor.METHODS)) == 1
