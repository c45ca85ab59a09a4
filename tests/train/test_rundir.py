"""jaxmm.train.rundir: a run folder holds one run; one process at a time writes it."""
import os
import subprocess
import sys

import pytest

from jaxmm.train.rundir import RunLock, claim, holds_run


def test_claim_refuses_to_mix_runs_and_overwrite_clears_the_old_one(tmp_path):
    run = tmp_path / "r"
    claim(str(run), resume=False, overwrite=False)  # nothing there yet
    (run / "checkpoints" / "3").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    assert holds_run(str(run))
    with pytest.raises(FileExistsError, match="pass --resume to continue it, --overwrite to replace it"):
        claim(str(run), resume=False, overwrite=False)
    claim(str(run), resume=True, overwrite=False)  # a resume uses it as it is
    assert (run / "config.json").exists()
    claim(str(run), resume=False, overwrite=True)
    assert not holds_run(str(run)) and not (run / "checkpoints").exists()
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files go
    with pytest.raises(ValueError, match="pass one of them"):
        claim(str(run), resume=True, overwrite=True)
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file, not a run folder"):
        claim(str(tmp_path / "f"), resume=False, overwrite=False)


def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    run = str(tmp_path / "r")
    with RunLock(run):
        with pytest.raises(RuntimeError, match=f"in use by process {os.getpid()}"):
            RunLock(run).__enter__()
    assert not os.path.exists(os.path.join(run, ".lock"))  # released
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket
    with open(os.path.join(run, ".lock"), "w") as f:
        f.write(f"{dead.stdout.strip()} {socket.gethostname()}")
    with pytest.warns(UserWarning, match="no longer runs"), RunLock(run):
        assert open(os.path.join(run, ".lock")).read().startswith(str(os.getpid()))
    with open(os.path.join(run, ".lock"), "w") as f:
        f.write("1 another-host")
    with pytest.raises(RuntimeError, match="on host another-host"):
        RunLock(run).__enter__()
