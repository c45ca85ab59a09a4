import jax
import numpy as np
import pytest

from jaxmm.methods import get_method
from jaxmm.train.loop import fit

from ._tiny import MODEL, OPT, tiny_splits, train_cfg


def test_resume_equals_uninterrupted(tmp_path):
    # EMA fill: method state, dropout streams and the data order must all survive the restart.
    method = get_method("synib", mask="random", fill="ema")
    model = type(MODEL)(encoder_hidden=(8,), fusion_hidden=(8,), dropout=0.2)
    kw = dict(hparams=[{}, {"lam": 1.0}])
    straight = fit(method, [tiny_splits()], [0, 1], model, OPT, train_cfg(epochs=4, select="best"), **kw)
    run = str(tmp_path / "run")
    fit(method, [tiny_splits()], [0, 1], model, OPT, train_cfg(epochs=2, select="best", checkpoint_every=1),
        run_dir=run, **kw)  # "killed" after epoch 2
    resumed = fit(method, [tiny_splits()], [0, 1], model, OPT,
                  train_cfg(epochs=4, select="best", checkpoint_every=1), run_dir=run, resume=True, **kw)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 straight.state.params, resumed.state.params)
    jax.tree.map(np.testing.assert_array_equal, straight.state.method_state, resumed.state.method_state)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]  # 1-based, resumed after 2
    assert straight.selected_epoch == resumed.selected_epoch


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(get_method("vanilla"), [tiny_splits()], [0], MODEL, OPT, train_cfg(checkpoint_every=1),
            run_dir=str(tmp_path / "empty"), resume=True)


# --- a damaged or unusable checkpoint folder: one-line errors, fall back to an intact checkpoint ------------

import errno  # noqa: E402
import glob  # noqa: E402
import os  # noqa: E402
import warnings  # noqa: E402

import jax.numpy as jnp  # noqa: E402

from jaxmm.train.checkpoint import CheckpointError, Checkpointer, tree_digest  # noqa: E402


def _tree(step):
    rng = np.random.default_rng(step)
    return {"w": rng.normal(size=4000).astype(np.float32), "h": jnp.ones(3, jnp.bfloat16) * step,
            "epoch": np.asarray(step, np.int32), "key": jax.random.key(step)}


def _like():
    return jax.tree.map(lambda x: x, _tree(0))


def _assert_tree(restored, step):
    want = _tree(step)
    np.testing.assert_array_equal(restored["w"], want["w"])
    np.testing.assert_array_equal(np.asarray(restored["h"], np.float32), np.asarray(want["h"], np.float32))
    assert int(restored["epoch"]) == step
    np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(want["key"]))


def _saved(tmp_path, steps=(1, 2)):
    ckpt = Checkpointer(str(tmp_path))
    for step in steps:
        ckpt.save(step, _tree(step))
    return ckpt


def _data_file(tmp_path, step):
    files = glob.glob(str(tmp_path / "checkpoints" / str(step) / "default" / "**" / "d" / "*"), recursive=True)
    return max(files, key=os.path.getsize)


def test_roundtrip_and_digest(tmp_path):
    ckpt = _saved(tmp_path)
    assert ckpt.epochs() == [1, 2] and ckpt.latest_epoch() == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_tree(ckpt.restore(_like()), 2)
        _assert_tree(ckpt.restore(_like(), epoch=1), 1)
    assert os.path.exists(tmp_path / "checkpoints" / "2" / "jaxmm_digest.json")
    assert tree_digest({"a": np.zeros(2)}) != tree_digest({"a": np.zeros(2, np.float16)})


def test_checkpoints_path_that_is_a_file(tmp_path):
    (tmp_path / "checkpoints").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=r"checkpoints is a file, not a folder; move it away or pick "
                                                 r"another run name$"):
        Checkpointer(str(tmp_path))


def test_checkpoints_path_replaced_by_a_file_before_a_save(tmp_path):
    ckpt = Checkpointer(str(tmp_path / "run"))
    (tmp_path / "run" / "checkpoints").rmdir()
    (tmp_path / "run" / "checkpoints").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        ckpt.save(1, _tree(1))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax's loop, after the error
@pytest.mark.filterwarnings("ignore:coroutine:RuntimeWarning")
@pytest.mark.parametrize("damage", ["flip", "truncate", "empty_metadata"])
def test_damaged_newest_falls_back_with_a_warning(tmp_path, damage):
    ckpt = _saved(tmp_path)
    step_dir = tmp_path / "checkpoints" / "2"
    if damage == "flip":  # orbax alone restores these bytes without complaint: the digest catches them
        path = _data_file(tmp_path, 2)
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(path, "wb").write(bytes(data))
    elif damage == "truncate":
        path = _data_file(tmp_path, 2)
        os.truncate(path, os.path.getsize(path) // 2)
    else:
        (step_dir / "default" / "_METADATA").write_text("")
    with pytest.warns(UserWarning, match=r"the checkpoint of epoch 2 in .*checkpoints is damaged \(.*\); set aside "
                                         r"as .*2\.damaged, resuming from epoch 1") as record:
        restored = Checkpointer(str(tmp_path)).restore(_like())
    ours = [w for w in record if "damaged" in str(w.message)]  # (pytest may add orbax's leftover callbacks)
    assert len(ours) == 1 and "\n" not in str(ours[0].message)
    _assert_tree(restored, 1)
    assert not step_dir.exists() and (tmp_path / "checkpoints" / "2.damaged").is_dir()
    again = Checkpointer(str(tmp_path))
    assert again.epochs() == [1]
    again.save(2, _tree(2))  # the resumed run writes epoch 2 again
    _assert_tree(again.restore(_like()), 2)
    del ckpt


def test_no_readable_checkpoint(tmp_path):
    _saved(tmp_path)
    for step in (1, 2):
        (tmp_path / "checkpoints" / str(step) / "default" / "_METADATA").write_text("{")
    ckpt = Checkpointer(str(tmp_path))
    with pytest.raises(CheckpointError, match=r"^no readable checkpoint in .*checkpoints \(epoch 2: .*; epoch 1: "
                                              r".*\); .* start over with --overwrite$") as err:
        ckpt.restore(_like())
    assert "\n" not in str(err.value)
    assert ckpt.epochs() == [1, 2]  # nothing set aside when none can be read (maybe a different model)
    with pytest.raises(CheckpointError, match="the checkpoint of epoch 1 in .* cannot be read"):
        ckpt.restore(_like(), epoch=1)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint of epoch 7 .*; it holds \[1, 2\]"):
        ckpt.restore(_like(), epoch=7)


def test_save_refuses_a_folder_holding_later_epochs(tmp_path):
    _saved(tmp_path, steps=(3,))
    with pytest.raises(CheckpointError, match=r"the checkpoint of epoch 2 was not written: .* already holds "
                                              r"epoch\(s\) \[3\].*--overwrite"):
        Checkpointer(str(tmp_path)).save(2, _tree(2))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax's loop, after the error
def test_write_error_keeps_the_previous_checkpoint(tmp_path):
    resource = pytest.importorskip("resource")
    import signal

    ckpt = _saved(tmp_path, steps=(1,))
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, limits[1]))  # a real failed write (EFBIG), as a full disk
    try:
        with pytest.raises(OSError, match=r"^could not write the checkpoint of epoch 2 to .*checkpoints \(File too "
                                          r"large\); free space there or fix its permissions, then resume \(the "
                                          r"checkpoint of epoch 1 is intact\)$"):
            ckpt.save(2, _tree(2))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert not (tmp_path / "checkpoints" / "2").exists()  # only orbax's temporary folder, removed or ignored
    again = Checkpointer(str(tmp_path))
    assert again.epochs() == [1]
    _assert_tree(again.restore(_like()), 1)


def test_disk_full_message(tmp_path, monkeypatch):
    ckpt = _saved(tmp_path, steps=(1,))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt.manager, "save", full)
    with pytest.raises(OSError, match=r"epoch 2 to .*checkpoints \(No space left on device\).*epoch 1 is intact") \
            as err:
        ckpt.save(2, _tree(2))
    assert err.value.errno == errno.ENOSPC
