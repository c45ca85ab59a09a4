"""Unimodal pre-training: one command pre-trains every encoder into its own run folder, the fused run
starts from them (run i from run i's), ``freeze`` keeps them bit-identical, a finished pre-training is
reused on resume and a changed one refused."""
import json
import os

import jax
import numpy as np
import pytest

from jaxmm.methods import get_method
from jaxmm.train import pretrain
from jaxmm.train.config import OptimizerConfig, RunConfig
from jaxmm.train.runs import run
from jaxmm.train.sharding import make_data_mesh
from jaxmm.train.state import TrainState

from _tiny import MODEL, OPT, initial_params, tiny_splits, train_cfg

SEEDS = (0, 1)


def _cfg(**changes):
    cfg = RunConfig(method="vanilla", dataset="spurious_xor", seeds=SEEDS, model=MODEL, optimizer=OPT,
                    train=train_cfg(epochs=2, pretrain_epochs=2, pretrain="freeze", checkpoint_every=1,
                                    tensorboard=False))
    for k, v in changes.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory, unoptimised_compile):
    """One ``run`` with pre-training (frozen), then the finished pre-training read back through a resume."""
    folder = str(tmp_path_factory.mktemp("pretrain") / "run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("jaxmm.train.runs.load_dataset", lambda name, seed, **kw: tiny_splits())
        fused = run(_cfg(), folder)[0].fit
    reused = pretrain.pretrain_encoders(_cfg(), [tiny_splits()], SEEDS, [{}, {}], ("a", "b"), folder, resume=True)
    return folder, fused, reused, initial_params(get_method("vanilla"), tiny_splits(), SEEDS)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_each_encoder_is_pretrained_alone_into_its_own_run_folder(trained):
    folder, _, reused, _ = trained
    for m in ("a", "b"):
        sub = os.path.join(folder, "pretrain", m)
        with open(os.path.join(sub, "config.json")) as f:
            recorded = json.load(f)
        assert (recorded["method"], recorded["method_options"], recorded["train"]["epochs"]) == \
            ("unimodal", {"modality": m}, 2)
        with open(os.path.join(sub, "metrics.jsonl")) as f:
            losses = [json.loads(line)["train/loss"] for line in f]
        assert len(losses) == 2  # the resume reused the finished pre-training, no epoch added
        assert np.all(np.asarray(losses[1]) < np.asarray(losses[0]))  # it trained, every run
        assert os.path.isfile(os.path.join(sub, "results.json")) and len(reused[m].test) == 2
    first = _leaves(reused["a"].params)[0]
    assert first.shape[0] == 2 and not np.array_equal(first[0], first[1])  # one encoder per run


def test_freeze_keeps_the_pretrained_encoders_bit_identical_run_by_run(trained):
    _, fused, reused, initial = trained
    for m in ("a", "b"):
        for got, want in zip(_leaves(fused.params["encoders"][m]), _leaves(reused[m].params)):
            np.testing.assert_array_equal(got, want)
    start = initial["fusion_head"]
    assert all(np.abs(a - b).max() > 0 for a, b in zip(_leaves(fused.params["fusion_head"]), _leaves(start)))


def test_fused_state_starts_from_the_pretrained_encoders(trained):
    _, _, reused, params = trained
    state = TrainState(params, {"encoders": {m: {} for m in reused}}, None, None, None, None, None, None)
    loaded = pretrain.load_encoders(state, reused, make_data_mesh()).params
    for m in ("a", "b"):
        for got, want in zip(_leaves(loaded["encoders"][m]), _leaves(reused[m].params)):
            np.testing.assert_array_equal(got, want)
    for got, want in zip(_leaves(loaded["fusion_head"]), _leaves(params["fusion_head"])):
        np.testing.assert_array_equal(got, want)  # the rest keeps its own initialisation


def test_a_changed_pretraining_is_refused_on_resume(trained):
    folder = trained[0]
    with pytest.raises(ValueError, match=r"pre-training in .*pretrain/a was recorded with other settings "
                                         r"\(optimizer.lr: 0.01 -> 0.005\)"):
        pretrain.pretrain_encoders(_cfg(optimizer=OptimizerConfig("adam", 5e-3)), [tiny_splits()], SEEDS,
                                   [{}, {}], ("a",), folder, resume=True)


def test_a_model_without_encoders_is_refused():
    state = TrainState({"trunk": np.zeros(2)}, {}, None, None, None, None, None, None)
    fake = {"a": pretrain.Pretrained({"w": np.zeros(2)}, {}, [])}
    with pytest.raises(ValueError, match=r"model.encoders\['a'\]"):
        pretrain.load_encoders(state, fake, None)


def test_overwrite_removes_the_pre_training_of_the_replaced_run(trained, tmp_path, monkeypatch):
    import dataclasses
    import shutil

    folder = str(tmp_path / "run")
    shutil.copytree(trained[0], folder)
    monkeypatch.setattr("jaxmm.train.runs.load_dataset", lambda name, seed, **kw: tiny_splits())
    cfg = _cfg()
    cfg.train = dataclasses.replace(cfg.train, epochs=1, pretrain_epochs=0)
    run(cfg, folder, overwrite=True)
    assert not os.path.exists(os.path.join(folder, "pretrain")) and os.path.isfile(os.path.join(folder, "results.json"))
