"""TensorBoard event files and W&B logs hold exactly what metrics.jsonl holds, at 1-based epochs."""
import glob
import json
import os
import shutil
import struct
import sys

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from jaxmm.methods import get_method
from jaxmm.train.loggers import EpochLoggers, per_run_scalars, slug
from jaxmm.train.loop import fit

from ._tiny import MODEL, OPT, tiny_splits, train_cfg


def read_events(folder) -> dict[tuple[str, int], list[float]]:
    """``{(tag, step): [values]}`` of every event file under ``folder``, read from the TFRecord framing.

    A record is ``uint64 length, uint32 crc(length), data, uint32 crc(data)`` (little-endian); the data
    is an ``Event`` protocol buffer.
    """
    out: dict[tuple[str, int], list[float]] = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        data, pos = open(path, "rb").read(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out.setdefault((value.tag, event.step), []).append(value.simple_value)
    return out


def assert_events_equal_metrics(folder, metrics: list[dict], run: int, runs: int) -> None:
    """Run ``run``'s event files hold every per-run number of each record once, as float32, at its epoch."""
    events = read_events(folder)
    expected = {(key, r["epoch"]): [value[run]] for r in metrics for key, value in r.items()
                if key != "epoch" and np.shape(value) == (runs,)}
    assert sorted(events) == sorted(expected)
    for key, values in expected.items():
        np.testing.assert_array_equal(events[key], np.float32(values), err_msg=str(key))


def test_event_files_equal_metrics_jsonl(logged_run):
    folder = logged_run.path / "tensorboard"
    assert sorted(os.listdir(folder)) == ["seed_0", "seed_1"]  # one TensorBoard run per seed
    assert [r["epoch"] for r in logged_run.metrics] == [1, 2, 3]
    for run, name in enumerate(("seed_0", "seed_1")):
        assert_events_equal_metrics(folder / name, logged_run.metrics, run, 2)
    assert {"train/coef/a", "val/acc", "val/acc/b"} <= {tag for tag, _ in read_events(folder / "seed_0")}


def test_wandb_logs_the_same_scalars_once_per_epoch(logged_run):
    calls = logged_run.wandb
    assert calls[0][0] == "init" and calls[0][1]["project"] == "jaxmm-tests" and calls[0][1]["name"] == "run"
    assert calls[-1] == ("finish", 0)
    logs = [c for c in calls if c[0] == "log"]
    assert [step for _, _, step in logs] == [1, 2, 3]
    for (_, data, step), record in zip(logs, logged_run.metrics):
        expected = {f"{key}/{name}": value[run] for key, value in record.items() if key != "epoch"
                    for run, name in enumerate(("seed_0", "seed_1"))}
        assert data == pytest.approx(expected, nan_ok=True)


def test_a_resume_rewrites_the_event_files_to_match_metrics_jsonl(logged_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(logged_run.path, run)
    shutil.rmtree(run / "checkpoints" / "3")  # killed after epoch 3 was logged, before its checkpoint
    fit(get_method("ogm_ge"), [tiny_splits()], [0, 1], MODEL, OPT, train_cfg(epochs=4, checkpoint_every=2),
        run_dir=str(run), resume=True)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in metrics] == [1, 2, 3, 4]
    assert metrics[:2] == logged_run.metrics[:2]
    for r, name in enumerate(("seed_0", "seed_1")):
        assert_events_equal_metrics(run / "tensorboard" / name, metrics, r, 2)  # epoch 3 once: the new one


def test_switches_and_missing_packages(tmp_path, monkeypatch):
    with EpochLoggers(train_cfg(tensorboard=False), str(tmp_path), ["seed 0"]) as off:
        off.write({"epoch": 1, "val/acc": [0.5]})
    assert os.listdir(tmp_path) == []
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "results.json").write_text("{}")  # a finished run
    with pytest.raises(ImportError, match=r"^train.wandb_project is set but wandb is not installed; pip install wandb "
                                          r"or unset it$"):
        fit(get_method("vanilla"), [tiny_splits()], [0], MODEL, OPT, train_cfg(wandb_project="p"),
            run_dir=str(tmp_path / "w"), overwrite=True)
    assert os.listdir(tmp_path / "w") == ["results.json"]  # refused before the old run was replaced
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"^train.tensorboard is on but tensorboardX is not installed; pip install "
                                          r"tensorboardX or set train.tensorboard=False$"):
        fit(get_method("vanilla"), [tiny_splits()], [0], MODEL, OPT, train_cfg(), run_dir=str(tmp_path / "t"))


def test_per_run_scalars_take_one_number_per_run():
    record = {"epoch": 2, "train/loss": np.asarray([0.5, 0.25], np.float32), "val/acc": [1.0, 0.5],
              "val/acc/a": [float("nan"), 0.5], "stage": np.asarray([1, 2]), "matrix": np.zeros((2, 3)), "name": "x"}
    got = per_run_scalars(record, 2)
    assert list(got) == ["train/loss", "val/acc", "val/acc/a", "stage"]
    np.testing.assert_array_equal(got["val/acc/a"], [np.nan, 0.5])
    assert slug("seed 0, lam=10") == "seed_0_lam=10"
