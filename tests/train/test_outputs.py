"""The run folder's files: atomic JSON, line-atomic metrics, torn lines."""
import dataclasses
import errno
import json
import os
import stat
import warnings

import numpy as np
import pytest

from jaxmm.train import outputs
from jaxmm.train.outputs import RunDir


@dataclasses.dataclass
class Cfg:
    lr: float = 1e-3
    seeds: tuple = (0, 1)


def test_write_json_is_atomic_and_readable(tmp_path):
    out = RunDir(str(tmp_path / "run"))
    out.write_json("config.json", {"cfg": Cfg(), "x": np.arange(3)})
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"cfg": {"lr": 1e-3, "seeds": [0, 1]},
                                                                          "x": [0, 1, 2]}
    assert os.listdir(tmp_path / "run") == ["config.json"]  # no temporary file left
    assert stat.S_IMODE(os.stat(tmp_path / "run" / "config.json").st_mode) & 0o044  # readable by others


def test_write_json_failure_keeps_the_old_file(tmp_path, monkeypatch):
    out = RunDir(str(tmp_path))
    out.write_json("config.json", {"lr": 1})

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs.os, "replace", full)
    with pytest.raises(OSError, match=r"^could not write .*config\.json \(No space left on device\); free space "
                                      r"there, fix its permissions or pick another --out-dir$") as err:
        out.write_json("config.json", {"lr": 2})
    assert err.value.errno == errno.ENOSPC
    assert json.loads((tmp_path / "config.json").read_text()) == {"lr": 1}
    assert os.listdir(tmp_path) == ["config.json"]


def test_metrics_roundtrip_and_truncate(tmp_path):
    out = RunDir(str(tmp_path))
    for epoch in range(1, 5):
        out.append_metrics({"epoch": epoch, "train/loss": np.asarray([1.0 / epoch, float("nan")])})
    assert [r["epoch"] for r in out.read_metrics()] == [1, 2, 3, 4]
    assert [r["epoch"] for r in out.read_metrics(2)] == [1, 2]  # the first 2 epochs
    out.truncate_metrics(3)
    assert [r["epoch"] for r in out.read_metrics()] == [1, 2, 3]
    assert np.isnan(out.read_metrics()[0]["train/loss"][1])


def test_metrics_written_0_based_are_read_1_based(tmp_path):
    out = RunDir(str(tmp_path))
    for epoch in range(3):  # a run folder from before epochs were 1-based
        out.append_metrics({"epoch": epoch, "train/loss": [epoch]})
    assert [(r["epoch"], r["train/loss"]) for r in out.read_metrics(2)] == [(1, [0]), (2, [1])]
    out.truncate_metrics(2)  # what its resume from a checkpoint after 2 epochs does
    out.append_metrics({"epoch": 3, "train/loss": [7]})
    assert [r["epoch"] for r in out.read_metrics()] == [1, 2, 3]


def test_run_labels_name_seeds_and_the_hyper_parameters_that_vary():
    assert outputs.run_labels([0, 1]) == ["seed 0", "seed 1"]
    assert outputs.run_labels([0, 0], [{"lam": 0.1, "lr": 1e-3}, {"lam": 10.0, "lr": 1e-3}]) == [
        "seed 0, lam=0.1", "seed 0, lam=10"]
    assert outputs.run_labels([3, 3]) == ["run 0, seed 3", "run 1, seed 3"]  # alike otherwise (per-run data)


def test_torn_last_line_is_dropped_with_a_warning(tmp_path):
    out = RunDir(str(tmp_path))
    for epoch in (1, 2):
        out.append_metrics({"epoch": epoch, "train/loss": [0.5]})
    with open(out.file("metrics.jsonl"), "a") as f:
        f.write('{"epoch": 3, "train/lo')  # killed mid-write
    with pytest.warns(UserWarning, match=r"dropped the torn last line 3 of .*metrics\.jsonl \(an interrupted "
                                         r"write\)"):
        assert [r["epoch"] for r in out.read_metrics()] == [1, 2]
    with pytest.warns(UserWarning, match="torn last line"):
        out.truncate_metrics(2)  # what a resume does: the torn line goes away for good
    out.append_metrics({"epoch": 3, "train/loss": [0.4]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["epoch"] for r in out.read_metrics()] == [1, 2, 3]


def test_torn_line_elsewhere_is_an_error(tmp_path):
    out = RunDir(str(tmp_path))
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match=r"^.*metrics\.jsonl line 2 is not a metrics record \(.*\); the file is "
                                         r"damaged: delete that line, or start the run over with --overwrite$"):
        out.read_metrics()


def test_append_is_one_write_per_line(tmp_path, monkeypatch):
    out = RunDir(str(tmp_path))
    calls = []
    write = os.write
    monkeypatch.setattr(outputs.os, "write", lambda fd, data: calls.append(len(data)) or write(fd, data))
    out.append_metrics({"epoch": 1, "train/loss": list(range(5000))})  # far beyond a stdio buffer
    assert len(calls) == 1
    assert out.read_metrics()[0]["train/loss"][-1] == 4999
