"""Tests for the data side of the ``jaxmm`` command: datasets, train --data-dir, prepare."""
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "data" / "readers"))  # the reader fixture writers
from reader_fixtures import crema_names, write_crema_csv, write_crema_d  # noqa: E402

from jaxmm.cli import main  # noqa: E402
from jaxmm.data.readers import crema_d  # noqa: E402
from jaxmm.data.registry import DATASETS  # noqa: E402
from jaxmm.train import loop, runs  # noqa: E402

NAMES = crema_names(actors=range(1001, 1005))  # 4 actors x 6 emotions
SMALL = ["--set", "dataset_options.image_size=8", "--set", "dataset_options.val_fraction=0.25"]


@pytest.fixture
def crema(tmp_path):
    root = tmp_path / "crema"
    write_crema_d(root, NAMES, frames_per_clip=1)
    write_crema_csv(root / "train.csv", NAMES[:16])
    write_crema_csv(root / "test.csv", NAMES[16:])
    return root


def test_datasets_lists_every_dataset_with_its_layout(capsys):
    main(["datasets"])
    out = capsys.readouterr().out
    for name in DATASETS:
        assert f"\n{name} " in "\n" + out
    assert "needs: data_dir = the CREMA-D folder:\n" in out and "<root>/AudioWAV/<name>.wav" in out
    assert "mosi|mosei|mustard|urfunny" in out


@pytest.mark.parametrize("args, message", [
    ([], "jaxmm train: error: dataset 'crema_d' reads files: give its folder as data_dir (jaxmm: --data-dir PATH); "
         "'jaxmm datasets' shows the layout it needs"),
    (["--data-dir", "/no/such/folder"], "jaxmm train: error: CREMA-D root folder not found: /no/such/folder"),
])
def test_train_without_or_with_a_wrong_data_dir(args, message):
    with pytest.raises(SystemExit) as e:
        main(["train", "--method", "vanilla", "--dataset", "crema_d", *args])
    assert str(e.value).splitlines()[0].startswith(message)


def test_train_reports_malformed_files(crema, tmp_path):
    (crema / "test.csv").write_text("1001_DFA_ANG_XX,HAP\n")
    with pytest.raises(SystemExit, match=r"jaxmm train: error: .*test.csv:1: label HAP contradicts"):
        main(["train", "--method", "vanilla", "--dataset", "crema_d", "--data-dir", str(crema),
              "--cache-dir", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="jaxmm train: error: dataset 'spurious_xor' is generated in memory"):
        main(["train", "--method", "vanilla", "--dataset", "spurious_xor", "--data-dir", str(crema)])


def test_prepare_builds_the_default_cache_once_and_train_uses_it(crema, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JAXMM_CACHE_DIR", str(tmp_path / "cache"))
    main(["prepare", "crema_d", "--data-dir", str(crema), *SMALL])
    out = capsys.readouterr().out
    (path,) = tmp_path.joinpath("cache").glob("crema_d-*.npz")
    assert f"cache: {path} (built)" in out
    assert "train      12 examples" in out and "val         4 examples" in out and "test        8 examples" in out
    assert "inputs: audio [257, 188, 1] float32, visual [1, 8, 8, 3] uint8; 6 classes" in out
    main(["prepare", "crema_d", "--data-dir", str(crema), "--cache-dir", str(tmp_path / "cache"), *SMALL])
    assert f"cache: {path} (already built)" in capsys.readouterr().out
    shutil.copytree(crema, crema.parent / "pristine")
    for wav in (crema / "AudioWAV").iterdir():  # only the cache can serve the next load (same sizes and times)
        st = wav.stat()
        wav.write_bytes(b"\0" * st.st_size)
        os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns))
    fitted = {}

    def fake_fit(method, splits, seeds, *args, **kwargs):  # the trainer has its own tests; check what it gets
        fitted.update(splits=splits, seeds=seeds, record=kwargs["record"])
        return loop.FitResult([{"acc": 0.5}] * len(seeds), [], [], [], None, None, None)

    monkeypatch.setattr(runs, "fit", fake_fit)
    main(["train", "--method", "vanilla", "--dataset", "crema_d", "--data-dir", str(crema), "--out-dir",
          str(tmp_path / "runs"), "--name", "r", "--seeds", "0,1", *SMALL])
    assert "vanilla on crema_d, seeds [0, 1]" in capsys.readouterr().out
    config = fitted["record"]  # what fit writes to config.json
    assert config["dataset_options"] == {"data_dir": str(crema), "image_size": 8, "val_fraction": 0.25}
    assert config["provenance"]["data_dir"] == str(crema)
    assert list(tmp_path.joinpath("cache").glob("*.npz")) == [path]
    expected = crema_d.load_crema_d(crema.parent / "pristine", image_size=8, val_fraction=0.25)
    for splits in fitted["splits"]:  # one per seed, both the data_seed-0 split read from the cache
        for part in ("train", "val", "test"):
            got, want = getattr(splits, part), getattr(expected, part)
            np.testing.assert_array_equal(got.label, want.label)
            np.testing.assert_array_equal(got.inputs["visual"], want.inputs["visual"])
            np.testing.assert_allclose(got.inputs["audio"], want.inputs["audio"])


def test_prepare_rejects_generated_datasets():
    with pytest.raises(SystemExit, match="jaxmm prepare: error: dataset 'pid_xor' is generated in memory; "
                                         "there is nothing to prepare"):
        main(["prepare", "pid_xor"])
