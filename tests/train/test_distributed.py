"""Reading the processes of a run from the environment, and the one-process behaviour of the helpers."""
import jax
import numpy as np
import pytest

from jaxmm.cli import build_parser, main
from jaxmm.train.batching import batches, epoch_permutations, stack_runs
from jaxmm.train.distributed import Settings, agree, initialize, is_main_process, settings_from_env
from jaxmm.train.sharding import make_data_mesh, process_rows, to_host

from ._tiny import tiny_splits

EXPLICIT = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
SLURM = {"SLURM_JOB_ID": "77", "SLURM_NTASKS": "8", "SLURM_PROCID": "5"}


@pytest.mark.parametrize("environ, mode, expected", [
    ({}, "auto", None),
    ({"PATH": "/bin"}, "on", Settings()),
    (EXPLICIT, "auto", Settings("10.0.0.1:1234", 4, 3)),
    (EXPLICIT, "on", Settings("10.0.0.1:1234", 4, 3)),
    (EXPLICIT, "off", None),
    ({**EXPLICIT, "JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"}, "auto", None),
    ({**EXPLICIT, "JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"}, "on", Settings("10.0.0.1:1234", 1, 0)),
    (SLURM, "auto", Settings()),
    ({**SLURM, "SLURM_NTASKS": "1"}, "auto", None),
    ({**SLURM, "SLURM_STEP_NUM_TASKS": "1"}, "auto", None),  # one task of this step (srun -n 1 in a bigger job)
    ({**SLURM, **EXPLICIT}, "auto", Settings("10.0.0.1:1234", 4, 3)),  # explicit variables win
])
def test_settings_from_env(environ, mode, expected):
    assert settings_from_env(environ, mode) == expected


@pytest.mark.parametrize("environ, message", [
    ({"JAX_NUM_PROCESSES": "2"}, "JAX_NUM_PROCESSES set but not JAX_COORDINATOR_ADDRESS, JAX_PROCESS_ID"),
    ({**EXPLICIT, "JAX_PROCESS_ID": " "}, "set but not JAX_PROCESS_ID"),
    ({**EXPLICIT, "JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two' must be an integer of at least 1"),
    ({**EXPLICIT, "JAX_NUM_PROCESSES": "0"}, "must be an integer of at least 1"),
    ({**EXPLICIT, "JAX_PROCESS_ID": "-1"}, "JAX_PROCESS_ID='-1' must be an integer of at least 0"),
    ({**EXPLICIT, "JAX_PROCESS_ID": "4"}, "JAX_PROCESS_ID=4 must be below JAX_NUM_PROCESSES=4"),
    ({**EXPLICIT, "JAX_COORDINATOR_ADDRESS": "10.0.0.1"}, "must be host:port"),
])
def test_bad_environment_is_one_line(environ, message):
    with pytest.raises(ValueError, match=message) as info:
        settings_from_env(environ)
    assert "\n" not in str(info.value)


def test_bad_mode():
    with pytest.raises(ValueError, match="distributed mode 'yes' is not one of"):
        settings_from_env({}, "yes")


def test_one_process(monkeypatch):
    """Without processes in the environment nothing is initialised and every helper is the plain one."""
    assert initialize("auto", {}) is False and initialize("off", EXPLICIT) is False
    assert is_main_process() and not jax.distributed.is_initialized()
    assert agree(lambda: 42) == 42
    with pytest.raises(FileExistsError, match="taken"):
        agree(lambda: (_ for _ in ()).throw(FileExistsError("taken")))
    mesh = make_data_mesh()
    assert process_rows(8 * mesh.shape["data"], mesh) == slice(0, 8 * mesh.shape["data"])
    x = np.arange(6.0).reshape(1, 6)
    np.testing.assert_array_equal(to_host({"x": jax.numpy.asarray(x)})["x"], x)


def test_batches_of_some_rows_are_those_rows_of_the_whole_batches():
    data = stack_runs([tiny_splits(0).train, tiny_splits(1).train])
    order = epoch_permutations([0, 1], 3, 40)
    for whole, part in zip(batches(data, order, 16), batches(data, order, 16, rows=slice(8, 16)), strict=True):
        jax.tree.map(lambda w, p: np.testing.assert_array_equal(w[:, 8:16], p), whole, part)
    last = list(batches(data, order, 16, rows=slice(8, 16)))[-1]
    np.testing.assert_array_equal(last.meta["valid"], 0.0)  # rows 8-15 of the last batch (8 examples) are padding


def test_cli_flags_and_bad_environment(monkeypatch, capsys):
    parser = build_parser()
    assert parser.parse_args(["train"]).distributed == "auto"
    assert parser.parse_args(["train", "--distributed"]).distributed == "on"
    assert parser.parse_args(["train", "--no-distributed"]).distributed == "off"
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    monkeypatch.delenv("JAX_PROCESS_ID", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["train", "--method", "vanilla", "--dataset", "spurious_xor"])
    assert str(info.value) == ("jaxmm train: error: JAX_NUM_PROCESSES set but not JAX_COORDINATOR_ADDRESS, "
                               "JAX_PROCESS_ID; set all three (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
                               "JAX_PROCESS_ID) on every process, or none (--debug shows the traceback)")
