"""Tests for benchmarks/bench_methods_step.py that compile nothing: batch layout, failure rows, the table."""
from benchmarks import bench_methods_step as bench

ARGS = bench.parse_args(["--batch", "2", "--image-size", "8", "--audio-size", "6", "5", "--frames", "2"])


def test_random_batch_is_in_the_readers_layouts():
    batch = bench.random_batch(ARGS)
    assert batch.inputs["audio"].shape == (1, 2, 6, 5, 1) and batch.inputs["audio"].dtype == "float32"
    assert batch.inputs["visual"].shape == (1, 2, 2, 8, 8, 3) and batch.inputs["visual"].dtype == "uint8"
    assert batch.label.shape == (1, 2) and batch.meta["valid"].sum() == 2


def _ok(ms, flops, nbytes, **notes):
    return {"status": "ok", "median_ms": ms, "flops": flops, "bytes_accessed": nbytes, "compile_s": 3.0,
            "per_term_grads": False, "epoch_end_hook": False, **notes}


def test_a_method_that_fails_to_build_is_a_failed_row_not_a_crash():
    record, run = bench.prepare("no_such_method", ARGS, bench.random_batch(ARGS))
    assert run is None and record["status"] == "failed" and "no_such_method" in record["error"]
    results = {"vanilla": _ok(200.0, 1e9, 4e8), "mmpareto": _ok(500.0, 2e9, 8e8, per_term_grads=True),
               "no_such_method": record}
    bench.add_ratios(results)
    rows = bench.markdown(results)
    assert rows[2] == "| vanilla | 200.0 | 1.00x | 1.00x | 1.00x | 1.00 | 1.00 | 3.0 |  |"
    assert rows[3] == "| mmpareto | 500.0 | 2.50x | 2.00x | 2.00x | 1.25 | 2.00 | 3.0 | per-term grads |"
    assert rows[4].startswith("| no_such_method | failed | - | - | - | - | - | - | ")


def test_ratios_are_to_vanilla_and_the_quotient_is_time_over_flops():
    results = {"vanilla": _ok(100.0, 4e9, 1e9), "synib": _ok(150.0, 6e9, 3e9)}
    bench.add_ratios(results)
    r = results["synib"]
    assert (r["time_ratio"], r["flop_ratio"], r["bytes_ratio"]) == (1.5, 1.5, 3.0)
    assert r["time_per_flop_ratio"] == 1.0


def test_round_robin_interleaves_the_methods():
    calls = []
    times = bench.round_robin({"a": lambda: calls.append("a") or 0.0, "b": lambda: calls.append("b") or 0.0}, 3)
    assert calls == ["a", "b"] * 3 and [len(t) for t in times.values()] == [3, 3]
