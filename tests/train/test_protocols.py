"""The MultiBench protocols: their settings, and one epoch of each, end to end, on fixture pickles in the
exact on-disk format (left zero padding, -inf audio, MOSI/MOSEI float sentiments [N, 1, 1], 0/1
sarcasm/humor labels, T = 50).

One epoch of a protocol costs its compilations (measured on one CPU core: mosei_dmil 28 s, mosi_btw
61 s, mosei_btw 45 s, mosi_synib 73 s with pre-training, mustard/urfunny_synib about 40 s each), so
one protocol of each model family runs in the default suite: mosei_dmil (through the command line),
mosi_btw (BTW's MoE model, L1 regression, the plateau schedule) and mustard_synib (FactorCL encoders,
SynIB); mosei_btw, mosi_synib (with pre-training) and urfunny_synib are ``slow``
(``pytest -m slow tests/train/test_protocols.py``)."""
import json
import os

import numpy as np
import pytest

from jaxmm.cli import main
from jaxmm.train.config import RunConfig, apply_overrides
from jaxmm.train.protocols import PROTOCOLS, apply_protocol, protocol
from jaxmm.train.runs import run

from multibench_fixture import T, write_file

pytestmark = pytest.mark.usefixtures("unoptimised_compile")  # compilation is what an epoch costs

N = 8  # examples per split: one batch
FILES = {"mosi_data.pkl": ({"vision": 20, "audio": 5, "text": 300}, True),  # MulT MOSI dims (SynIB's)
         "mosei_senti_data.pkl": ({"vision": 35, "audio": 74, "text": 300}, True),
         "sarcasm.pkl": ({"vision": 371, "audio": 81, "text": 300}, False),
         "humor.pkl": ({"vision": 371, "audio": 81, "text": 300}, False)}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("multibench")
    for i, (name, (dims, sentiment)) in enumerate(FILES.items()):
        write_file(root / name, N, seed=i, sentiment=sentiment, dims=dims)
    return str(root)


def _one_epoch(name, method, data_dir, *overrides, options=None):
    cfg = apply_protocol(RunConfig(method=method, method_options=dict(options or {}), seeds=(0,)), name)
    apply_overrides(cfg, [f"dataset_options.data_dir={data_dir}", "train.epochs=1", "train.batch_size=8",
                          "train.progress=False", *overrides])
    return cfg, run(cfg, None)[0]


def test_synib_flags_apply_per_dataset_and_mask_only_to_synib():
    cfg = apply_protocol(RunConfig(method="synib"), "mustard_synib")  # default mask: random
    assert (cfg.hparams, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ({"lam": 0.001, "p": 0.1}, 5e-4, 1e-3)
    cfg = apply_protocol(RunConfig(method="synib", method_options={"mask": "learned"}), "urfunny_synib")
    assert (cfg.hparams, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ({"lam": 1.0, "lam_sp": 0.01}, 1e-4, 1e-4)
    cfg = apply_protocol(RunConfig(method="synib", hparams={"lam": 5.0}), "mosi_synib")
    assert cfg.hparams == {"lam": 5.0, "p": 0.3} and cfg.method_options == {"reference": "unimodal"}
    assert cfg.dataset_options == {"dataset": "mosi", "variant": "mult"}
    cfg = apply_protocol(RunConfig(method="vanilla"), "mosi_synib")
    assert (cfg.hparams, cfg.method_options, cfg.optimizer.lr) == ({}, {}, 1e-4)
    p = protocol("urfunny_synib")
    assert (p.dataset, p.modalities, p.model.encoders) == ("multibench", ("vision", "text"),
                                                           {"vision": "factorcl", "text": "factorcl"})
    assert (p.model.fusion, p.model.fusion_hidden, p.model.encoder_options["text"]) == (
        "concat", (64,), {"hidden_size": 40, "padding": "left"})
    opt = p.optimizer
    assert (opt.name, opt.lr, opt.weight_decay, opt.schedule, opt.warmup_steps, opt.restart_steps,
            opt.restart_mult) == ("adam", 1e-4, 1e-4, "cosine_restarts", 780, 4, 2)
    assert (p.train.epochs, p.train.batch_size, p.train.patience, p.train.pretrain_epochs) == (100, 32, 30, 100)


def test_btw_protocol_settings():
    p = protocol("mosei_btw")
    assert p.dataset_options == {"dataset": "mosei", "variant": "mult", "task": "regression"}
    assert p.model.encoder_options["audio"] == {"hidden": 16, "features": 64, "padding": "left"}
    assert (p.model.projection, p.model.fusion, p.model.fusion_hidden, p.model.fusion_options) == (
        128, "moe", (128,), {"num_layers": 2, "num_experts": 16, "top_k": 2})
    opt = p.optimizer
    assert (opt.name, opt.lr, opt.weight_decay, opt.schedule, opt.plateau_factor, opt.plateau_patience,
            opt.clip_norm) == ("adam", 1e-4, 1e-4, "plateau", 0.5, 20, 0.8)
    assert (p.train.epochs, p.train.batch_size, p.train.patience, p.train.select) == (40, 32, 7, "best")
    assert set(PROTOCOLS) >= {"mosi_btw", "mosei_btw", "mosi_synib", "mustard_synib", "urfunny_synib",
                              "mosei_dmil"}


def test_mosi_btw_one_epoch_l1_regression(data_dir):
    _, result = _one_epoch("mosi_btw", "btw", data_dir)
    val, test = result.fit.val[0], result.fit.test[0]
    assert val["loss"] == pytest.approx(val["mae"], rel=1e-5)  # the L1 loss of the predictions
    assert np.isfinite(test["mae"]) and set(result.splits[0].modalities) == {"vision", "audio", "text"}
    assert result.fit.history[0]["lr"] == [pytest.approx(1e-4)]  # the plateau schedule logs the rate
    assert result.splits[0].train.inputs["text"].shape[1:] == (T, 300)


@pytest.mark.slow
def test_mosei_btw_one_epoch(data_dir):
    _, result = _one_epoch("mosei_btw", "vanilla", data_dir)
    assert np.isfinite(result.fit.test[0]["mae"]) and result.splits[0].task == "regression"


@pytest.mark.slow
def test_mosi_synib_pretrains_and_trains_synib_one_epoch(data_dir):
    cfg, result = _one_epoch("mosi_synib", "synib", data_dir, "train.pretrain_epochs=1")
    assert cfg.hparams == {"lam": 0.1, "p": 0.3} and cfg.optimizer.lr == 5e-4
    assert result.splits[0].modalities == ("vision", "text") and result.splits[0].num_classes == 2
    assert 0 <= result.fit.test[0]["acc"] <= 1 and "synib_kl" in str(result.fit.history[0])


@pytest.mark.parametrize("name", ["mustard_synib", pytest.param("urfunny_synib", marks=pytest.mark.slow)])
def test_sarcasm_and_humor_synib_one_epoch(name, data_dir):
    # pre-training is exercised by mosi_synib (and tests/train/test_pretrain.py); off here for time
    _, result = _one_epoch(name, "synib", data_dir, "train.pretrain_epochs=0")
    labels = result.splits[0].train.label
    assert set(np.unique(labels)) <= {0, 1} and result.splits[0].modalities == ("vision", "text")
    assert 0 <= result.fit.test[0]["acc"] <= 1


def test_mosei_dmil_one_epoch_through_the_command_line(data_dir, tmp_path):
    main(["train", "--protocol", "mosei_dmil", "--method", "dmil", "--dataset", "multibench", "--seeds", "0",
          "--name", "dmil", "--out-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
          "--set", f"dataset_options.data_dir={data_dir}", "--set", "train.epochs=1", "--set", "train.batch_size=8",
          "--set", "train.progress=False", "--set", "train.tensorboard=False"])
    results = json.loads((tmp_path / "dmil" / "results.json").read_text())
    config = json.loads((tmp_path / "dmil" / "config.json").read_text())
    assert results["method"] == "dmil" and 0 <= results["runs"][0]["test"]["acc"] <= 1
    assert config["modalities"] == ["vision", "text"] and config["dataset_options"]["dataset"] == "mosei"
    assert config["method_options"]["stage_epochs"] == [10, 10]
    assert os.path.isfile(tmp_path / "dmil" / "metrics.jsonl")
