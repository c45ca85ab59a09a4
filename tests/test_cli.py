import json

import pytest

from jaxmm.cli import main


def test_methods_and_datasets_list(capsys):
    main(["methods"])
    out = capsys.readouterr().out
    assert "synib" in out and "options: mask='random'" in out
    main(["datasets"])
    assert "spurious_xor" in capsys.readouterr().out


def test_train_and_resume(tmp_path, capsys):
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


def test_errors_are_one_line_messages():
    with pytest.raises(SystemExit, match="unknown method 'nope'"):
        main(["train", "--method", "nope", "--dataset", "spurious_xor"])
    with pytest.raises(SystemExit, match="unknown dataset"):
        main(["train", "--method", "vanilla", "--dataset", "mnist"])
    with pytest.raises(SystemExit, match="unknown experiment"):
        main(["experiment", "fig99"])
