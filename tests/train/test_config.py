import pytest

from jaxmm.cli import build_parser
from jaxmm.train.config import RunConfig, TrainConfig, apply_overrides, parse_value
from jaxmm.train.protocols import PROTOCOLS, apply_protocol, protocol


def test_overrides_set_nested_fields_and_dicts():
    cfg = apply_overrides(RunConfig(), ["optimizer.lr=3e-4", "train.epochs=5", "method_options.mask=learned",
                                        "model.encoder_hidden=(32, 16)", "hparams.lam=1", "optimizer.weight_decay=0"])
    assert cfg.optimizer.lr == 3e-4 and cfg.train.epochs == 5
    assert cfg.method_options == {"mask": "learned"} and cfg.hparams == {"lam": 1}
    assert cfg.model.encoder_hidden == (32, 16)
    assert isinstance(cfg.optimizer.weight_decay, float)


def test_bad_overrides():
    with pytest.raises(ValueError, match="valid"):
        apply_overrides(RunConfig(), ["optimizer.learning_rate=1"])
    with pytest.raises(ValueError, match="key.path=value"):
        apply_overrides(RunConfig(), ["optimizer.lr"])
    with pytest.raises(ValueError, match="select"):
        apply_overrides(RunConfig(), ["train.select=median"])
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)


def test_parse_value():
    assert parse_value("1e-3") == 1e-3 and parse_value("abc") == "abc" and parse_value("(1, 2)") == (1, 2)


def test_crema_d_protocol_is_the_ogm_ge_setup():
    p = protocol("crema_d")
    assert p.model.encoders == {"audio": "audio", "visual": "visual"}
    assert (p.model.fusion, p.model.fusion_hidden, p.model.init, p.model.bn_scale_std) == ("concat", (), "xavier", 0.0)
    opt = p.optimizer
    assert (opt.name, opt.lr, opt.momentum, opt.weight_decay) == ("sgd", 1e-3, 0.9, 1e-4)
    assert (opt.schedule, opt.step_size, opt.gamma) == ("step", 70, 0.1)
    assert (p.train.epochs, p.train.batch_size, p.dataset_options) == (100, 64, {"num_frames": 1})
    assert all(protocol(name).train.augment_frames == ("visual",)  # official train crops
               for name in PROTOCOLS if protocol(name).dataset != "multibench")
    mmpareto = protocol("crema_d_mmpareto")  # its StepLR is never stepped: constant rate
    assert (mmpareto.optimizer.schedule, mmpareto.optimizer.lr, mmpareto.model.bn_scale_std) == ("constant", 2e-3, 0.02)
    assert set(PROTOCOLS) >= {"crema_d", "crema_d_inforeg", "crema_d_mmpareto", "crema_d_dnr", "kinetics_sounds"}


def test_apply_protocol_then_overrides_and_unknown_names():
    cfg = RunConfig(dataset="crema_d", dataset_options={"num_frames": 3})
    apply_overrides(apply_protocol(cfg, "crema_d_inforeg"), ["model.dtype=bfloat16", "optimizer.lr=1e-2"])
    assert cfg.dataset_options == {"num_frames": 3}  # the user's choice wins
    assert (cfg.model.dtype, cfg.optimizer.lr, cfg.optimizer.step_size, cfg.train.epochs) == ("bfloat16", 1e-2, 30, 50)
    with pytest.raises(ValueError, match="dtype"):
        apply_overrides(cfg, ["model.dtype=float16"])
    assert apply_overrides(cfg, ["train.augment_frames=[]"]).train.augment_frames == ()
    with pytest.raises(ValueError, match=r"augment_frames is a list of modality names, e.g. \['visual'\]"):
        TrainConfig(augment_frames="visual")
    with pytest.raises(ValueError, match="crema_d"):
        protocol("cremad")
    args = build_parser().parse_args(["train", "--method", "vanilla", "--dataset", "crema_d", "--protocol", "crema_d"])
    assert args.protocol == "crema_d"


@pytest.mark.parametrize("override, match", [
    ("optimizer.lr=abc", r'field "optimizer.lr" - should be "float" instead of value "abc"'),
    ("train.epochs=2.5", r'field "train.epochs" - should be "int"'),
    ("model.encoder_hidden=16", r'field "model.encoder_hidden" - should be "Sequence"'),
    ("optimizer.lr=-1", "optimizer.lr must be a positive number"),
    ("optimizer.lr.x=1", "'optimizer.lr.x' goes below 'lr', which is a single value"),
    ("seeds=(0, 0)", "repeat a seed"),
    ("seeds=(-1,)", "non-negative integers"),
])
def test_overrides_are_type_checked_naming_the_field(override, match):
    with pytest.raises(ValueError, match=match):
        apply_overrides(RunConfig(), [override])


def test_nan_learning_rate_is_refused():
    from jaxmm.train.config import OptimizerConfig

    with pytest.raises(ValueError, match="optimizer.lr must be a positive number, got nan"):
        OptimizerConfig(lr=float("nan"))


def test_ints_become_floats_and_lists_tuples():
    cfg = apply_overrides(RunConfig(), ["optimizer.lr=1", "seeds=[0, 1]", "model.encoders.audio=audio"])
    assert cfg.optimizer.lr == 1.0 and isinstance(cfg.optimizer.lr, float) and cfg.seeds == (0, 1)
    assert cfg.model.encoders == {"audio": "audio"}


@pytest.mark.parametrize("kind", ["py", "yaml", "json"])
def test_config_files(tmp_path, kind):
    from jaxmm.train.config import from_dict, load_config_file, merge, to_dict

    text = {"py": "from jaxmm.train.config import RunConfig, OptimizerConfig\n\n\ndef get_config():\n"
                  "    return RunConfig(method='synib', seeds=(0, 1), optimizer=OptimizerConfig(lr=3e-4))\n",
            "yaml": "method: synib\nseeds: [0, 1]\noptimizer:\n  lr: 3.0e-4\n",
            "json": '{"method": "synib", "seeds": [0, 1], "optimizer": {"lr": 3e-4}}'}[kind]
    path = tmp_path / f"c.{kind}"
    path.write_text(text)
    cfg = from_dict(RunConfig, merge(to_dict(RunConfig()), load_config_file(str(path))))
    assert (cfg.method, cfg.seeds, cfg.optimizer.lr, cfg.optimizer.name) == ("synib", (0, 1), 3e-4, "adam")


def test_bad_config_files(tmp_path):
    from jaxmm.train.config import from_dict, load_config_file

    with pytest.raises(FileNotFoundError, match="no such file"):
        load_config_file(str(tmp_path / "missing.yaml"))
    (tmp_path / "c.toml").write_text("")
    with pytest.raises(ValueError, match="unknown file type '.toml'"):
        load_config_file(str(tmp_path / "c.toml"))
    (tmp_path / "c.yaml").write_text("method: [unclosed\n")
    with pytest.raises(ValueError, match="does not parse"):
        load_config_file(str(tmp_path / "c.yaml"))
    (tmp_path / "c.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="get_config"):
        load_config_file(str(tmp_path / "c.py"))
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['optimiser'\]"):
        from_dict(RunConfig, {"optimiser": {"lr": 1.0}})


def test_differences_list_dotted_fields():
    from jaxmm.train.config import differences

    a, b = RunConfig(), apply_overrides(RunConfig(), ["optimizer.lr=0.01", "hparams.lam=2", "train.epochs=5"])
    assert differences(a, b) == ["hparams.lam: '<unset>' -> 2.0", "optimizer.lr: 0.001 -> 0.01", "train.epochs: 100 -> 5"]
    assert differences(a, RunConfig()) == []


def test_unimodal_reference_is_a_dict_of_accuracies():
    cfg = apply_overrides(RunConfig(), ["train.unimodal_reference={'audio': 0.62, 'visual': 1}",
                                        "train.tensorboard=False", "train.wandb_project=jaxmm"])
    assert cfg.train.unimodal_reference == {"audio": 0.62, "visual": 1.0}
    assert isinstance(cfg.train.unimodal_reference["visual"], float)
    assert (cfg.train.tensorboard, cfg.train.wandb_project) == (False, "jaxmm")
    with pytest.raises(ValueError, match=r"^train.unimodal_reference: give each modality's accuracy trained alone, "
                                         r"in \(0, 1\]; got \{'audio': 62\}$"):
        TrainConfig(unimodal_reference={"audio": 62})
    with pytest.raises(ValueError, match="train.unimodal_reference"):
        apply_overrides(RunConfig(), ["train.unimodal_reference=0.6"])


@pytest.mark.parametrize("override,match", [
    ("optimizer.clip_norm=-1", "optimizer.clip_norm must be a non-negative number"),
    ("optimizer.warmup_steps=-2", "optimizer.warmup_steps must be a non-negative integer"),
    ("optimizer.plateau_patience=-1", "optimizer.plateau_patience must be a non-negative integer"),
    ("optimizer.plateau_factor=1.5", r"optimizer.plateau_factor must be in \(0, 1\)"),
    ("optimizer.plateau_threshold=1", r"optimizer.plateau_threshold must be in \[0, 1\)"),
    ("optimizer.restart_steps=0", "optimizer.restart_steps must be a positive integer"),
    ("optimizer.restart_mult=0", "optimizer.restart_mult must be a positive integer"),
    ("optimizer.schedule=cosine", None),  # valid alone: the loop fills in total_steps
    ("train.pretrain_epochs=-1", "train.pretrain_epochs must be a non-negative integer"),
    ("train.pretrain=thaw", r"train.pretrain must be one of \('finetune', 'freeze'\)"),
    ("modalities=['text', 'text']", "modalities is a list of distinct modality names"),
])
def test_new_fields_are_checked_with_one_line_errors(override, match):
    if match is None:
        assert apply_overrides(RunConfig(), [override]).optimizer.schedule == "cosine"
        return
    with pytest.raises(ValueError, match=match) as error:
        apply_overrides(RunConfig(), [override])
    assert "\n" not in str(error.value)


def test_cosine_warmup_must_end_before_the_total():
    from jaxmm.train.config import OptimizerConfig

    with pytest.raises(ValueError, match="warmup_steps=10 must be below optimizer.total_steps=10"):
        OptimizerConfig(schedule="cosine", warmup_steps=10, total_steps=10)
    cfg = apply_overrides(RunConfig(), ["modalities=['text', 'vision']", "train.pretrain=freeze"])
    assert cfg.modalities == ("text", "vision") and cfg.train.pretrain == "freeze"
