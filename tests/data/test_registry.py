"""Tests for the dataset registry: every dataset loads from a tiny fixture, through the cache, with clear errors."""
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "readers")]  # the fixture writers live beside the reader tests

import test_avdigits  # noqa: E402
import test_avmnist  # noqa: E402
import test_hateful_memes  # noqa: E402
import test_kinetics_sounds  # noqa: E402
import test_mfeat  # noqa: E402
import test_multibench  # noqa: E402
import test_ucf101  # noqa: E402
from reader_fixtures import crema_names, write_crema_csv, write_crema_d  # noqa: E402

from jaxmm.data import avdigits, registry  # noqa: E402
from jaxmm.data.readers import (avmnist, crema_d, hateful_memes, irony, kinetics_sounds, mfeat,  # noqa: E402
                                multibench, ucf101)
from jaxmm.data.types import DatasetSplits  # noqa: E402

SEED = 3
GENERATED = ("spurious_xor", "pid_xor", "imbalance", "synthetic_regression")
CREMA_NAMES = crema_names(actors=range(1001, 1011))  # 10 actors x 6 emotions


def write_crema(root):
    write_crema_d(root, CREMA_NAMES)
    write_crema_csv(root / "train.csv", CREMA_NAMES[:44])
    write_crema_csv(root / "test.csv", CREMA_NAMES[44:])


def write_kinetics(root):
    train, test = test_kinetics_sounds.clip_ids(10), test_kinetics_sounds.clip_ids(3, offset=50)
    test_kinetics_sounds.write_pkl_layout(root, train + test)
    test_kinetics_sounds.write_lists(root, train, test, range(10), [30, 0, 5])


def write_multibench(root):
    rng = np.random.default_rng(0)
    content = {k: test_multibench.make_split(6, rng, label_shape=(), sentiment=False)[0]
               for k in ("train", "valid", "test")}
    test_multibench.write(root / "sarcasm.pkl", content)


# name -> (fixture writer, registry options besides data_dir, the same data read directly)
CASES = {
    "crema_d": (write_crema, {"image_size": 8, "num_frames": 2, "data_seed": 1},
                lambda root: crema_d.load_crema_d(root, image_size=8, num_frames=2, seed=1)),
    "crema_d_irony": (write_crema, {"alpha": 1.0, "image_size": 8},
                      lambda root: irony.load_crema_d_irony(root, alpha=1.0, seed=SEED, image_size=8)),
    "kinetics_sounds": (write_kinetics, {"image_size": 8, "val_fraction": 0.2},
                        lambda root: kinetics_sounds.load_kinetics_sounds(root, image_size=8, val_fraction=0.2)),
    "ucf101": (lambda root: test_ucf101.make(root, "two_stream"), {"image_size": 8, "flow_length": 2, "val_groups": 1},
               lambda root: ucf101.load_ucf101(root, image_size=8, flow_length=2, val_groups=1)),
    "multibench": (write_multibench, {"dataset": "mustard"},
                   lambda root: multibench.load_multibench_affect(root / "sarcasm.pkl", "sarcasm")),
    "avmnist": (test_avmnist.write, {"num_val": 4}, lambda root: avmnist.load_avmnist(root, num_val=4)),
    "hateful_memes": (test_hateful_memes.make, {"image_size": 8},
                      lambda root: hateful_memes.load_hateful_memes(root, image_size=8)),
    "mfeat": (test_mfeat.write_views, {"views": ("mor", "kar"), "data_seed": 2},
              lambda root: mfeat.load_mfeat(root, views=("mor", "kar"), seed=2)),
    "avdigits": (lambda root: test_avdigits.write_fake_fsdd(root, per_digit=1), {},
                 lambda root: avdigits.load_avdigits(root, seed=SEED)),
}


def assert_splits_equal(a: DatasetSplits, b: DatasetSplits):
    for part in ("train", "val", "test"):
        x, y = getattr(a, part), getattr(b, part)
        assert (x.name, x.num_classes, x.class_names, x.group_names, x.dropped) == \
               (y.name, y.num_classes, y.class_names, y.group_names, y.dropped)
        assert list(x.inputs) == list(y.inputs) and list(x.meta) == list(y.meta)
        for key in x.inputs:
            assert x.inputs[key].dtype == y.inputs[key].dtype
            np.testing.assert_array_equal(x.inputs[key], y.inputs[key])
        for key in x.meta:
            np.testing.assert_array_equal(x.meta[key], y.meta[key])
        np.testing.assert_array_equal(x.label, y.label)


def test_every_dataset_is_registered_with_what_it_needs():
    assert set(registry.DATASETS) == set(CASES) | set(GENERATED)
    for name, entry in registry.DATASETS.items():
        assert entry.summary and entry.needs
        assert (entry.data_dir == "unused") == (name in GENERATED)
    assert "AudioWAV/<name>.wav" in registry.DATASETS["crema_d"].needs
    assert "train.csv" not in registry.DATASETS["crema_d_irony"].needs
    assert "ucfTrainTestlist/classInd.txt" in registry.DATASETS["ucf101"].needs
    assert "image/{train,test}_data.npy" in registry.DATASETS["avmnist"].needs


@pytest.mark.parametrize("name", sorted(CASES))
def test_loads_like_the_reader_and_reloads_from_the_cache(name, tmp_path):
    write, options, direct = CASES[name]
    root, cache_dir = tmp_path / "data", tmp_path / "cache"
    root.mkdir()
    write(root)
    expected = direct(root)
    first = registry.load_dataset(name, SEED, data_dir=str(root), cache_dir=str(cache_dir), **options)
    assert_splits_equal(first, expected)
    assert len(list(cache_dir.glob("*.npz"))) == 1
    for path in root.rglob("*"):  # the second load must come from the cache alone (same sizes and times)
        if path.is_file():
            st = path.stat()
            path.write_bytes(b"\0" * st.st_size)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert_splits_equal(registry.load_dataset(name, SEED, data_dir=str(root), cache_dir=str(cache_dir), **options),
                        expected)


def test_the_cache_keeps_the_task(tmp_path):
    rng = np.random.default_rng(1)
    content = {k: test_multibench.make_split(6, rng)[0] for k in ("train", "valid", "test")}
    test_multibench.write(tmp_path / "mosi_raw.pkl", content)
    load = lambda: registry.load_dataset("multibench", 0, data_dir=tmp_path / "mosi_raw.pkl",
                                         cache_dir=tmp_path / "cache", task="regression")
    first, second = load(), load()
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert first.task == second.task == "regression" and second.train.label.dtype == np.float32
    assert registry.load_dataset("multibench", 0, data_dir=tmp_path / "mosi_raw.pkl",
                                 cache_dir=tmp_path / "cache").task == "classification"
    # caches written before the task marker: float targets with one output read back as regression
    arrays = {k: v for k, v in registry._to_arrays(first).items() if not k.endswith("/task")}
    assert registry._from_arrays(arrays).task == "regression"


def test_generated_datasets_take_no_file_options():
    for name in GENERATED:
        with pytest.raises(ValueError, match="generated in memory and reads no files; drop cache_dir, data_dir"):
            registry.load_dataset(name, 0, data_dir="/data", cache_dir="/cache")


def test_irony_mutation_follows_the_run_seed_over_one_cached_base(tmp_path):
    write_crema(tmp_path / "data")
    load = lambda seed: registry.load_dataset("crema_d_irony", seed, data_dir=tmp_path / "data",
                                              cache_dir=tmp_path / "cache", alpha=1.0, image_size=8)
    a, b = load(0), load(1)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert a.num_classes == 7 and len(a.train) == len(b.train)
    np.testing.assert_array_equal(a.train.meta["base_label"], b.train.meta["base_label"])
    assert not np.array_equal(a.train.meta["irony_donor"], b.train.meta["irony_donor"])


def test_errors_name_what_to_fix(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; available: avdigits, avmnist, crema_d, "
                                         "crema_d_irony, hateful_memes, imbalance, kinetics_sounds, mfeat, multibench, pid_xor"):
        registry.load_dataset("mnist", 0)
    with pytest.raises(ValueError, match="'crema_d' reads files: give its folder as data_dir"):
        registry.load_dataset("crema_d", 0)
    with pytest.raises(FileNotFoundError, match=r"CREMA-D root folder not found(.|\n)*AudioWAV"):
        registry.load_dataset("crema_d", 0, data_dir=tmp_path / "nowhere")
    test_avmnist.write(tmp_path)
    with pytest.raises(ValueError, match="bad options .* 'avmnist'.*unexpected keyword argument 'frames'"):
        registry.load_dataset("avmnist", 0, data_dir=tmp_path, frames=3)
    with pytest.raises(ValueError, match="missing 1 required positional argument: 'alpha'"):
        registry.load_dataset("crema_d_irony", 0, data_dir=tmp_path)


def test_prepare_builds_then_hits_the_cache(tmp_path):
    test_avmnist.write(tmp_path / "data")
    splits, files = registry.prepare_dataset("avmnist", data_dir=tmp_path / "data", cache_dir=tmp_path / "c",
                                             num_val=4)
    assert len(splits.train) == 8 and len(files) == 1 and not files[0][1]
    assert Path(files[0][0]).is_file() and Path(files[0][0]).parent == tmp_path / "c"
    assert registry.prepare_dataset("avmnist", data_dir=tmp_path / "data", cache_dir=tmp_path / "c",
                                    num_val=4)[1] == [(files[0][0], True)]
    with pytest.raises(ValueError, match="nothing to prepare"):
        registry.prepare_dataset("pid_xor", cache_dir=tmp_path / "c")


def test_changed_source_files_are_rebuilt(tmp_path):
    root, cache_dir = tmp_path / "data", tmp_path / "cache"
    root.mkdir()
    test_mfeat.write_views(root)
    load = lambda: registry.load_dataset("mfeat", 0, data_dir=root, cache_dir=cache_dir, views=("mor", "kar"))
    first = load()
    (cached,) = cache_dir.glob("*.npz")
    test_mfeat.write_views(root, seed=1)  # same layout, new values: new sizes and times
    with pytest.warns(UserWarning, match=rf"the source files of cache file {cached} changed since it was built "
                                         rf"\(sizes or times of files under {root}\); rebuilding it"):
        second = load()
    assert not np.array_equal(first.train.inputs["mor"], second.train.inputs["mor"])
    assert len(list(cache_dir.glob("*.npz"))) == 1 and not cached.exists()  # the stale file is gone
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(load().train.inputs["mor"], second.train.inputs["mor"])


def test_cache_inside_the_data_folder_is_not_a_source(tmp_path):
    test_mfeat.write_views(tmp_path)
    load = lambda: registry.prepare_dataset("mfeat", data_dir=tmp_path, cache_dir=tmp_path / "cache",
                                            views=("mor",))[1]
    assert not load()[0][1] and load()[0][1]  # built, then found
