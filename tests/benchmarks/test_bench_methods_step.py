"""Tests for benchmarks/bench_methods_step.py that compile nothing: batch layout, failure rows, the table."""
from benchmarks import bench_methods_step as bench

ARGS = bench.parse_args(["--batch", "2", "--image-size", "8", "--audio-size", "6", "5", "--frames", "2"])


def test_random_batch_is_in_the_readers_layouts():
    batch = bench.random_batch(ARGS)
    assert batch.inputs["audio"].shape == (1, 2, 6, 5, 1) and batch.inputs["audio"].dtype == "float32"
    assert batch.inputs["visual"].shape == (1, 2, 2, 8, 8, 3) and batch.inputs["visual"].dtype == "uint8"
    assert batch.label.shape == (1, 2) and batch.meta["valid"].sum() == 2


def test_a_method_that_fails_to_build_is_a_failed_row_not_a_crash():
    record = bench.benchmark("no_such_method", ARGS, bench.random_batch(ARGS))
    assert record["status"] == "failed" and "no_such_method" in record["error"]
    results = {"vanilla": {"status": "ok", "median_ms": 200.0, "first_step_s": 3.0, "per_term_grads": False,
                           "epoch_end_hook": False, "relative_to_vanilla": 1.0},
               "mmpareto": {"status": "ok", "median_ms": 500.0, "first_step_s": 9.0, "per_term_grads": True,
                            "epoch_end_hook": False, "relative_to_vanilla": 2.5},
               "no_such_method": record}
    rows = bench.markdown(results)
    assert rows[2] == "| vanilla | 200.0 | 1.00x | 3.0 |  |"
    assert rows[3] == "| mmpareto | 500.0 | 2.50x | 9.0 | per-term grads |"
    assert rows[4].startswith("| no_such_method | failed | - | - | ")
