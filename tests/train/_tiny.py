"""Tiny problems shared by the trainer tests."""
import numpy as np

from jaxmm.data.types import ArrayDataset, DatasetSplits
from jaxmm.models.multimodal import MLPModelConfig
from jaxmm.train.config import OptimizerConfig, TrainConfig

# Options a method cannot run without on the tiny problem (modalities "a", "b"; 3 classes; encoder width 8),
# and schedules shortened so that two epochs cross a stage boundary.
METHOD_OPTIONS = {"unimodal": {"modality": "a"}, "dmil": {"stage_epochs": (1, 1)},
                  "reconboost": {"epochs_per_stage": 1, "correct_epochs": 1}, "dnr": {"reinit_epoch": 1}}

MODEL = MLPModelConfig(encoder_hidden=(8,), fusion_hidden=(8,))
OPT = OptimizerConfig("adam", 1e-2, 0.0)


def tiny_splits(seed=0, n=(40, 16, 16), classes=3):
    """Two modalities whose class means differ, sizes ``(train, val, test)``."""
    rng = np.random.default_rng(seed)

    def split(size, name):
        y = rng.integers(0, classes, size)
        centers = np.eye(classes, 4) * 2.0
        inputs = {"a": (centers[y] + rng.normal(size=(size, 4))).astype(np.float32),
                  "b": (centers[y][:, ::-1] + rng.normal(size=(size, 4))).astype(np.float32)}
        return ArrayDataset(inputs, y, classes, name=name)

    return DatasetSplits(split(n[0], "train"), split(n[1], "val"), split(n[2], "test"))


def train_cfg(**kw):
    """A small TrainConfig without progress bars."""
    return TrainConfig(**{"epochs": 3, "batch_size": 16, "progress": False, "checkpoint_every": 0, **kw})


def initial_params(method, splits, seeds, model=MODEL, opt=OPT, batch_size=16):
    """The parameters ``fit`` starts from for ``seeds`` (stacked over runs), without training."""
    import jax

    from jaxmm.train.batching import batches, stack_runs
    from jaxmm.train.loop import task_of_splits
    from jaxmm.train.trainer import Trainer, resolve_hparams

    n = len(splits.train)
    trainer = Trainer(method, {m: x.shape[1:] for m, x in splits.train.inputs.items()}, task_of_splits(splits),
                      model, opt)
    example = next(batches(stack_runs([splits.train]), np.arange(n)[None], batch_size))
    hp = resolve_hparams(method, opt, [{}] * len(seeds))
    return trainer.init(seeds, hp, jax.tree.map(lambda x: x[0], example)).params
