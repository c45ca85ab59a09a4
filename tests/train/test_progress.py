"""Progress: one plain line per epoch when stdout is not a terminal, a redrawn bar when it is."""
import io
import re

import numpy as np
import pytest

from jaxmm.train.progress import Progress

LINE = re.compile(r"^ogm_ge x2 epoch (\d+)/3: loss (\d\.\d{4}), val acc (\d\.\d{4}) \(\d+\.\d s\)$")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_fit_off_a_terminal_prints_one_line_per_epoch(logged_run):
    assert "\r" not in logged_run.stdout
    lines = logged_run.stdout.splitlines()
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [int(m[1]) for m in matches] == [1, 2, 3]
    for m, record in zip(matches, logged_run.metrics):
        assert float(m[2]) == pytest.approx(np.mean(record["train/loss"]), abs=5.1e-5)  # printed to 4 decimals
        assert float(m[3]) == pytest.approx(np.mean(record["val/acc"]), abs=5.1e-5)


def test_a_terminal_gets_a_bar_and_disabled_progress_shows_nothing():
    screen = Terminal()
    with Progress("vanilla x1", 1, 3, stream=screen) as progress:
        progress.epoch(2, {"loss": 0.5})
        progress.epoch(3, {"loss": 0.25})
    assert "\r" in screen.getvalue() and "3/3" in screen.getvalue() and "epoch 2/3:" not in screen.getvalue()
    for stream in (Terminal(), io.StringIO()):
        with Progress("vanilla x1", 0, 3, enabled=False, stream=stream) as progress:
            progress.epoch(1, {"loss": 0.5})
        assert stream.getvalue() == ""
