import json

import pytest

from jaxmm.cli import main

pytestmark = pytest.mark.usefixtures("unoptimised_compile")  # tiny runs: compilation is what they cost


def test_methods_and_datasets_list(capsys):
    main(["methods"])
    out = capsys.readouterr().out
    assert "synib" in out and "options: mask='random'" in out
    main(["datasets"])
    assert "spurious_xor" in capsys.readouterr().out


def test_train_and_resume(tmp_path, capsys, compilation_cache):
    args = ["train", "--method", "synib", "--dataset", "spurious_xor", "--seeds", "0,1", "--out-dir", str(tmp_path),
            "--name", "t", "--set", "train.epochs=2", "--set", "train.progress=False",
            "--set", "dataset_options.alpha=0.5", "--set", "method_options.mask=oracle", "--set", "hparams.lam=1"]
    main(args)
    out = capsys.readouterr().out
    assert "test metrics" in out and "acc" in out
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["method_options"]["mask"] == "oracle" and config["seeds"] == [0, 1]
    assert config["method_options"]["fill"] == "noise"  # every option is recorded, defaults included
    main([a if a != "train.epochs=2" else "train.epochs=3" for a in args] + ["--resume"])
    assert len((tmp_path / "t" / "metrics.jsonl").read_text().splitlines()) == 3


def test_errors_are_one_line_messages(capsys):
    with pytest.raises(SystemExit, match="unknown method 'nope'"):
        main(["train", "--method", "nope", "--dataset", "spurious_xor"])
    for argv, named in ((["train", "--method", "vanilla", "--dataset", "mnist"], "invalid choice: 'mnist'"),
                        (["experiment", "fig99"], "invalid choice: 'fig99' (choose from 'spurious-xor'")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and named in capsys.readouterr().err


def test_help_lists_methods_datasets_protocols_and_experiments(capsys):
    from jaxmm.cli import EXPERIMENTS
    from jaxmm.data.registry import DATASETS
    from jaxmm.methods import available
    from jaxmm.train.protocols import PROTOCOLS

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for line, names in (("methods", available()), ("datasets", DATASETS), ("protocols", PROTOCOLS),
                        ("experiments", EXPERIMENTS)):
        assert f"{line}: {', '.join(names)}" in text


PLUGIN = '''
from jaxmm.methods import Method, Terms, register


@register("fused_only")
def fused_only() -> Method:
    """The fused head alone, registered from outside jaxmm."""
    return Method(terms=lambda model, batch, ctx: Terms({"ce": ctx.loss(model(batch.inputs).logits, batch.label)}),
                  term_weights=lambda ctx: {"ce": 1.0})
'''


def test_a_method_registered_in_a_plugin_module_trains_from_the_cli(tmp_path, monkeypatch, capsys, request):
    import sys

    from jaxmm.methods import registry

    (tmp_path / "my_methods.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))  # as PYTHONPATH would
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))  # the plugin's method leaves with the test
    request.addfinalizer(lambda: sys.modules.pop("my_methods", None))
    main(["train", "--plugin", "my_methods", "--method", "fused_only", "--dataset", "spurious_xor",
          "--set", "train.epochs=1", "--set", "train.progress=False", "--out-dir", str(tmp_path / "runs")])
    assert "fused_only on spurious_xor" in capsys.readouterr().out
    main(["methods", "--plugin", "my_methods"])
    listed = capsys.readouterr().out
    assert "fused_only" in listed and "registered from outside jaxmm" in listed
    with pytest.raises(SystemExit) as e:
        main(["train", "--plugin", "no_such_module", "--method", "fused_only", "--dataset", "spurious_xor"])
    assert str(e.value.code).startswith("jaxmm train: error: --plugin no_such_module")  # exit status 1, this line


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_results(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    epochs = 20
    args = ["train", "--method", "vanilla", "--dataset", "spurious_xor", "--seeds", "0,1", "--out-dir", str(tmp_path),
            "--set", f"train.epochs={epochs}", "--set", "train.progress=False"]
    cmd = [sys.executable, "-m", "jaxmm.cli"]
    # the three processes compile the same programs (most XLA optimisations off, as in this module): the later
    # two load them from a shared persistent cache
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla-cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    killed = subprocess.Popen(cmd + args + ["--name", "k"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=env)
    metrics = tmp_path / "k" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert len(metrics.read_text().splitlines()) < epochs  # it was killed mid-run
    resumed = subprocess.run(cmd + args + ["--name", "k", "--resume"], capture_output=True, text=True, timeout=300,
                             env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "taking over the lock" in resumed.stderr  # the killed process left its lock behind
    whole = subprocess.run(cmd + args + ["--name", "w"], capture_output=True, text=True, timeout=300, env=env)
    assert whole.returncode == 0, whole.stderr
    read = lambda name: json.loads((tmp_path / name / "results.json").read_text())["runs"]
    assert [r["test"] for r in read("k")] == [r["test"] for r in read("w")]
    assert len(metrics.read_text().splitlines()) == epochs


def test_sweep_trains_the_grid_with_a_folder_per_static_value_and_resumes(tmp_path, capsys, compilation_cache):
    args = ["train", "--method", "vanilla", "--dataset", "spurious_xor", "--seeds", "0,1", "--out-dir", str(tmp_path),
            "--name", "s", "--set", "train.progress=False", "--sweep", "method_options.unimodal_heads=True,False",
            "--sweep", "hparams.lam_uni=1,10"]
    main(args + ["--set", "train.epochs=1"])
    table = (tmp_path / "s" / "sweep.md").read_text()
    assert table.count("| method_options.unimodal_heads=") == 4 and "| hparams.lam_uni=10 |" in table
    runs = json.loads((tmp_path / "s" / "method_options.unimodal_heads=True" / "results.json").read_text())["runs"]
    assert [(r["seed"], r["hparams"]["lam_uni"]) for r in runs] == [(0, 1.0), (1, 1.0), (0, 10.0), (1, 10.0)]
    program = json.loads((tmp_path / "s" / "method_options.unimodal_heads=False" / "config.json").read_text())
    assert program["method_options"]["unimodal_heads"] is False and program["sweep"]["hparams.lam_uni"] == [1, 10]
    main(args + ["--set", "train.epochs=2", "--resume"])
    metrics = (tmp_path / "s" / "method_options.unimodal_heads=True" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 2
    assert json.loads((tmp_path / "s" / "config.json").read_text())["train"]["epochs"] == 2
    assert "outputs:" in capsys.readouterr().out
