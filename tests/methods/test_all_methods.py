"""Every registered method trains on 8 simulated CPU devices and resumes to the uninterrupted result.

One subprocess per test (``XLA_FLAGS=--xla_force_host_platform_device_count=8``) loops over
``jaxmm.methods.available()``: per method, two runs (seeds 0, 1) train 2 epochs on the tiny
problem with a checkpoint after each epoch; a copy of the run folder without the epoch-2
checkpoint then resumes from epoch 1 and must end with the same parameters, method state and
selected epochs. Compilation dominates, so a persistent compilation cache lets the resumed run
reuse the first run's programs, and XLA compiles them with most optimisations off
(``JAX_DISABLE_MOST_OPTIMIZATIONS=1``, about a third faster; both runs use the same programs).
All methods take minutes on 2 CPU cores, so that test is ``slow`` (``pytest -m slow``); the
default suite runs the :data:`FAST` subset.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from jaxmm.methods import available

from _tiny import METHOD_OPTIONS as OPTIONS  # two epochs cross each method's stage boundary


SCRIPT = textwrap.dedent("""
    import json, os, shutil, sys, tempfile, time, traceback
    import jax, numpy as np
    from jaxmm.methods import available, get_method
    from jaxmm.train.loop import fit
    from _tiny import MODEL, OPT, tiny_splits, train_cfg
    assert jax.device_count() == 8, jax.devices()
    names, options = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    model = type(MODEL)(encoder_hidden=(8,), fusion_hidden=(8,), dropout=0.1)
    cfg = train_cfg(epochs=2, select="best", checkpoint_every=1)
    root = tempfile.mkdtemp()
    results = {}
    for name in names:
        print("running", name, file=sys.stderr, flush=True)
        start = time.time()
        try:
            method = get_method(name, **options.get(name, {}))
            run = os.path.join(root, name)
            straight = fit(method, [tiny_splits()], [0, 1], model, OPT, cfg, run_dir=run)
            leaf = jax.tree.leaves(straight.state.params)[0]
            assert len(leaf.sharding.device_set) == 8, leaf.sharding
            shutil.copytree(run, run + "-resumed")
            shutil.rmtree(os.path.join(run + "-resumed", "checkpoints", "2"))  # "killed" after epoch 1
            resumed = fit(method, [tiny_splits()], [0, 1], model, OPT, cfg, run_dir=run + "-resumed", resume=True)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                         straight.state.params, resumed.state.params)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                         straight.state.method_state, resumed.state.method_state)
            assert straight.selected_epoch == resumed.selected_epoch, (straight.selected_epoch,
                                                                       resumed.selected_epoch)
            assert [h["epoch"] for h in resumed.history] == [1, 2]
            assert all(np.isfinite(t["acc"]) for t in straight.test)
            results[name] = {"ok": True, "seconds": round(time.time() - start, 1)}
        except Exception:
            results[name] = {"ok": False, "error": traceback.format_exc()[-2500:]}
    shutil.rmtree(root)
    print("RESULTS " + json.dumps(results))
""")


def run_methods(names, tmp_path):
    """Runs SCRIPT for ``names`` in one 8-device subprocess; returns its per-method results."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
           "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla-cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
           "PYTHONPATH": os.pathsep.join([os.path.join(os.path.dirname(__file__), "..", "train"),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(names), json.dumps(OPTIONS)], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS "))
    return json.loads(line[len("RESULTS "):])


def _check(results):
    failed = {n: r["error"] for n, r in results.items() if not r["ok"]}
    assert not failed, "\n\n".join(f"{n}:\n{e}" for n, e in failed.items())


# The default suite's subset: a method whose stages switch parameter groups and add modules
# (dmil), and one whose epoch hook snapshots learners and resets the optimiser (reconboost).
FAST = ("dmil", "reconboost")


def test_stage_switching_methods_run_sharded_and_resume(tmp_path):
    names = [n for n in FAST if n in available()]
    if not names:
        pytest.skip(f"none of {FAST} is registered")
    results = run_methods(names, tmp_path)
    assert sorted(results) == sorted(names)
    _check(results)


@pytest.mark.slow
def test_every_method_runs_sharded_and_resumes(tmp_path):
    names = sorted(available())
    results = run_methods(names, tmp_path)
    assert sorted(results) == names
    _check(results)
