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
    for epoch in range(4):
        out.append_metrics({"epoch": epoch, "train/loss": np.asarray([1.0 / (epoch + 1), float("nan")])})
    assert [r["epoch"] for r in out.read_metrics()] == [0, 1, 2, 3]
    assert [r["epoch"] for r in out.read_metrics(2)] == [0, 1]
    out.truncate_metrics(3)
    assert [r["epoch"] for r in out.read_metrics()] == [0, 1, 2]
    assert np.isnan(out.read_metrics()[0]["train/loss"][1])


def test_torn_last_line_is_dropped_with_a_warning(tmp_path):
    out = RunDir(str(tmp_path))
    for epoch in range(2):
        out.append_metrics({"epoch": epoch, "train/loss": [0.5]})
    with open(out.file("metrics.jsonl"), "a") as f:
        f.write('{"epoch": 2, "train/lo')  # killed mid-write
    with pytest.warns(UserWarning, match=r"dropped the torn last line 3 of .*metrics\.jsonl \(an interrupted "
                                         r"write\)"):
        assert [r["epoch"] for r in out.read_metrics()] == [0, 1]
    with pytest.warns(UserWarning, match="torn last line"):
        out.truncate_metrics(2)  # what a resume does: the torn line goes away for good
    out.append_metrics({"epoch": 2, "train/loss": [0.4]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["epoch"] for r in out.read_metrics()] == [0, 1, 2]


def test_torn_line_elsewhere_is_an_error(tmp_path):
    out = RunDir(str(tmp_path))
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\n{"epo\n{"epoch": 2}\n')
    with pytest.raises(ValueError, match=r"^.*metrics\.jsonl line 2 is not a metrics record \(.*\); the file is "
                                         r"damaged: delete that line, or start the run over with --overwrite$"):
        out.read_metrics()


def test_append_is_one_write_per_line(tmp_path, monkeypatch):
    out = RunDir(str(tmp_path))
    calls = []
    write = os.write
    monkeypatch.setattr(outputs.os, "write", lambda fd, data: calls.append(len(data)) or write(fd, data))
    out.append_metrics({"epoch": 0, "train/loss": list(range(5000))})  # far beyond a stdio buffer
    assert len(calls) == 1
    assert out.read_metrics()[0]["train/loss"][-1] == 4999


def test_plot_curves_writes_png(tmp_path):
    records = [{"epoch": e, "train/loss": [1.0 / (e + 1), 2.0]} for e in range(3)]
    outputs.plot_curves(records, ["train/loss", "missing"], str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert os.listdir(tmp_path) == ["curves.png"]
