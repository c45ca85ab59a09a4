"""benchmarks/bench_kernels.py end to end at a tiny size (interpret mode on the CPU: agreement, no timings)."""
import json

import numpy as np

from benchmarks import bench_kernels as bench


def test_resnet18_shapes_are_the_official_encoder():
    shapes = bench.resnet18_shapes(3, 1)
    assert len(shapes) == 60 and shapes[0] == (7, 7, 3, 64) and shapes[-1] == (512,)
    assert sum(int(np.prod(s)) for s in shapes) == 11_176_512  # torchvision's 11,689,512 less the 513,000 of fc


def test_cpu_run_records_agreement_and_no_timings(tmp_path):
    out = tmp_path / "kernels.json"
    assert bench.main(["--width-divisor", "64", "--block-rows", "8", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "interpret" and "not a speed measurement" in report["note"]
    assert report["device"] and report["backend"] == "cpu"
    for name, result in report["results"].items():
        (config,) = result["configs"]
        assert config["max_abs_diff"] < 1e-4 and "speedup" not in config
        assert result["meets_threshold"] is False and result["best_speedup"] is None


def test_compiled_mode_times_both_sides_interleaved(monkeypatch):
    calls, functions = [], bench.functions

    def fake_functions(name, block_rows, interpret):  # compiled Pallas does not exist on the CPU: jnp stand-ins
        reference = functions(name, block_rows, True)[1]
        return (lambda *a: calls.append("k") or reference(*a)), (lambda *a: calls.append("r") or reference(*a))

    monkeypatch.setattr(bench, "functions", fake_functions)
    _, args = bench.workloads(64)["orthogonal_update"]
    record = bench.measure("orthogonal_update", args, 8, rounds=3, interpret=False)
    assert calls == ["k", "r"] + ["k", "r"] * 3
    assert record["max_abs_diff"] == 0.0 and record["speedup"] > 0
    assert {"kernel_median_ms", "reference_median_ms", "kernel_min_ms", "reference_min_ms"} <= set(record)
