"""Two processes x 2 CPU devices through ``jax.distributed`` train what 1 process x 4 devices trains.

One shared setup (module fixture) launches, at the same time, a single process with 4 simulated
CPU devices and two processes with 2 each, joined on a localhost coordinator (gloo collectives).
Each trains PMR (its epoch hook evaluates the train split: sharded evaluation across processes),
two seeds, 3 epochs, select=best, a checkpoint every epoch, under ``train.parallel="auto"`` (the
two processes also under ``shard_map``); then the two processes train a third run and kill
themselves (SIGKILL) when its epoch-2 checkpoint is due: its ``metrics.jsonl`` already holds epoch 2
and its lock is left behind.
A second pair of processes resumes it. A persistent compilation cache lets later processes reuse
the programs of earlier ones.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from jaxmm.train.distributed import initialize, is_main_process, sync
    initialize()
    import jax, numpy as np
    import jaxmm.train.loop as loop_module
    from jaxmm.methods import get_method
    from jaxmm.train.checkpoint import Checkpointer
    from jaxmm.train.sharding import to_host
    from _tiny import MODEL, OPT, tiny_splits, train_cfg
    spec = json.loads(sys.argv[1])
    assert jax.device_count() == 4 and jax.local_device_count() == 4 // jax.process_count(), jax.devices()
    rows = []
    batches = loop_module.batches
    loop_module.batches = lambda *a, **k: (rows.append(b.label.shape) or b for b in batches(*a, **k)) \
        if "rows" in k else batches(*a, **k)  # the epochs' batches, not the example of shapes
    save = Checkpointer.save

    def killing_save(self, epoch, tree):
        if [current, epoch] == spec.get("kill"):
            sync("killed")  # both processes are past their last collective
            os.kill(os.getpid(), signal.SIGKILL)
        save(self, epoch, tree)

    Checkpointer.save = killing_save
    loop_module.write_figures = lambda *a, **k: None  # matplotlib's seconds buy nothing here
    method = get_method("pmr")
    for current, parallel in spec["runs"]:
        cfg = train_cfg(epochs=3, select="best", checkpoint_every=1, parallel=parallel, progress=True,
                        eval_batch_size=16, tensorboard=True)
        r = loop_module.fit(method, [tiny_splits(n=(44, 16, 16))], [0, 1], MODEL, OPT, cfg,
                            run_dir=os.path.join(spec["out"], f"{current}-{jax.process_count()}"),
                            resume=spec.get("resume", False))
        final = to_host({"params": r.state.params, "best": r.params, "method_state": r.state.method_state})
        if is_main_process():
            flat = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(final)}
            np.savez(os.path.join(spec["out"], f"{current}-{jax.process_count()}.npz"), **flat)
            print("SELECTED", current, json.dumps(r.selected_epoch), json.dumps(r.test), flush=True)
    print("ROWS", json.dumps(sorted(set(rows))), flush=True)
""")
TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(spec: dict, processes: int, cache: str):
    """Starts ``processes`` workers (4 devices in all) of SCRIPT; returns the Popen objects."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={4 // processes}",
           "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": cache, "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(name, None)
    port = _free_port()
    procs = []
    for pid in range(processes):
        extra = {} if processes == 1 else {"JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
                                           "JAX_NUM_PROCESSES": str(processes), "JAX_PROCESS_ID": str(pid)}
        procs.append(subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(spec)], env={**env, **extra},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _wait(procs) -> list[tuple[int, str, str]]:
    """(return code, stdout, stderr) of every worker; all are killed when one outlives the timeout."""
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=TIMEOUT_S)
            out.append((p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The single-process reference, the two-process runs (one killed) and the resume of the killed one."""
    out = str(tmp_path_factory.mktemp("multiprocess"))
    cache = str(tmp_path_factory.mktemp("xla-cache"))
    single = _launch({"out": out, "runs": [["auto", "auto"]]}, 1, cache)
    pair = _launch({"out": out, "runs": [["auto", "auto"], ["shard_map", "shard_map"], ["killed", "auto"]],
                    "kill": ["killed", 2]}, 2, cache)
    pair_result = _wait(pair)
    resumed = _launch({"out": out, "runs": [["killed", "auto"]], "resume": True}, 2, cache)
    return {"out": out, "single": _wait(single), "pair": pair_result, "resumed": _wait(resumed)}


def _params(out: str, name: str, processes: int) -> dict:
    with np.load(os.path.join(out, f"{name}-{processes}.npz")) as f:
        return dict(f)


def _epochs(path: str) -> list[int]:
    with open(os.path.join(path, "metrics.jsonl")) as f:
        return [json.loads(line)["epoch"] for line in f]


@pytest.mark.parametrize("parallel, rtol, atol", [("auto", 2e-5, 2e-6), ("shard_map", 2e-4, 2e-5)])
def test_two_processes_equal_one(runs, parallel, rtol, atol):
    """``auto`` on 2 x 2 devices equals ``auto`` on 1 x 4; so does ``shard_map`` (its own reductions:
    the tolerance of ``tests/train/test_shard_map.py``)."""
    (rc, stdout, stderr), = runs["single"]
    assert rc == 0, stderr[-3000:]
    assert "ROWS [[2, 16]]" in stdout  # one process gathers whole batches
    for rc, _, stderr in runs["pair"]:
        assert rc == -signal.SIGKILL, stderr[-3000:]  # both trained auto and shard_map, then were killed
    single, pair = _params(runs["out"], "auto", 1), _params(runs["out"], parallel, 2)
    assert sorted(single) == sorted(pair) and len(single) > 3
    for key in single:
        np.testing.assert_allclose(pair[key], single[key], rtol=rtol, atol=atol, err_msg=key)
    first, second = (stdout for _, stdout, _ in runs["pair"])
    assert "ROWS" not in first + second  # they were killed before the end (checked on resume below)
    assert "pmr x2 epoch 3/3" in first and "epoch" not in second  # progress from process 0 only
    assert "SELECTED " + parallel in first and "SELECTED" not in second
    path = os.path.join(runs["out"], f"{parallel}-2")
    assert _epochs(path) == [1, 2, 3]  # one writer: each record once
    assert sorted(os.listdir(os.path.join(path, "checkpoints"))) == ["2", "3"]
    assert sorted(os.listdir(os.path.join(path, "tensorboard"))) == ["seed_0", "seed_1"]
    for label in ("seed_0", "seed_1"):
        assert len(os.listdir(os.path.join(path, "tensorboard", label))) == 1
    assert not os.path.exists(os.path.join(path, ".lock"))
    with open(os.path.join(path, "results.json")) as f:
        assert len(json.load(f)["runs"]) == 2


def test_killed_two_process_run_resumes_to_the_uninterrupted_one(runs):
    path = os.path.join(runs["out"], "killed-2")
    results = runs["resumed"]
    for rc, _, stderr in results:
        assert rc == 0, stderr[-3000:]
    for _, stdout, _ in results:
        assert "ROWS [[2, 8]]" in stdout  # each process gathers only its 8 rows of every batch of 16
    assert _epochs(path) == [1, 2, 3]  # the epoch-2 record of the killed run was replaced, not repeated
    straight, resumed = _params(runs["out"], "auto", 2), _params(runs["out"], "killed", 2)
    assert sorted(straight) == sorted(resumed)
    for key in straight:
        np.testing.assert_allclose(resumed[key], straight[key], rtol=1e-6, atol=1e-7, err_msg=key)
    selected = [line.split()[2] for _, out, _ in [*runs["pair"], *results] for line in out.splitlines()
                if line.startswith(("SELECTED auto", "SELECTED killed"))]
    assert len(selected) == 2 and selected[0] == selected[1]  # the same selected epochs (select=best)
