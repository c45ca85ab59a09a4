"""Divergence of the training loss: hand-made loss sequences."""
import numpy as np
import pytest

from jaxmm.train import divergence
from jaxmm.train.divergence import DivergenceMonitor, check_divergence

HINT = "the learning rate is likely too high for this optimiser: lower optimizer.lr"


def test_adam_blow_up_is_flagged_with_epoch_run_and_cause():
    losses = [1.0, 0.9, 3.2e3, 8.1e9, 2.5e20]  # Adam at lr 1e6
    found = check_divergence(losses)
    assert found.epoch == 2 and found.runs == (0,) and not found.nonfinite
    assert found.message == ("training loss diverged at epoch 2: run 0 rose to 3.2e+03 from 0.9 at epoch 1 (more "
                             f"than 100x its start or best); {HINT}")
    assert str(found) == found.message and "\n" not in found.message


def test_final_value_alone_is_flagged():
    assert check_divergence([1.0, 2.5e20]).epoch == 1


def test_noisy_decrease_is_not_flagged():
    rng = np.random.default_rng(0)
    losses = np.exp(-np.linspace(0, 4, 60)) * (1 + 0.3 * rng.normal(size=60) ** 2) + 0.01
    assert check_divergence(losses) is None


def test_one_epoch_bump_is_not_flagged():
    assert check_divergence([1.0, 0.5, 0.4, 1.2, 0.35, 0.3]) is None  # 3x over the best for one epoch
    assert check_divergence([2.0, 1.0, 2.0, 1.5, 3.0]) is None  # back up to (and past) the start


def test_loss_near_zero_then_up_is_not_a_blow_up():
    # a fitted training set: 1e-6, then 1e-2 is 10,000x its best but far below where it started
    assert check_divergence([1.1, 0.1, 1e-4, 1e-6, 1e-2, 0.5]) is None


def test_nan_and_inf_are_divergence():
    found = check_divergence([1.0, 0.8, float("nan")])
    assert found.epoch == 2 and found.nonfinite
    assert found.message == f"training loss diverged at epoch 2: run 0 has loss nan; {HINT}"
    assert check_divergence([float("inf")]).nonfinite  # even at the first epoch


def test_per_run_and_named():
    losses = np.array([[1.0, 1.0, 1.0], [0.5, 0.9, 0.7], [0.4, 5e3, 0.6], [0.3, 1e5, np.nan]])
    monitor = DivergenceMonitor(3, names=["seed 0", "seed 1", "seed 2"])
    found = [monitor.update(e, row) for e, row in enumerate(losses)]
    assert found[0] is None and found[1] is None
    assert found[2].runs == (1,) and "seed 1 rose to 5e+03 from 0.9 at epoch 1" in found[2].message
    assert found[3].runs == (2,) and found[3].nonfinite  # seed 1 is not reported again
    assert found[3].message.startswith("training loss diverged at epoch 3: seed 2 has loss nan;")
    assert list(monitor.state.flagged) == [False, True, True]


def test_patience_and_factor():
    losses = [1.0, 0.5, 150.0, 0.4, 150.0, 160.0]  # threshold: best + 99 * max(best, start) ~ 100
    assert check_divergence(losses).epoch == 2
    assert check_divergence(losses, patience=2).epoch == 5  # two epochs in a row above the threshold
    assert check_divergence(losses, factor=1e3) is None


def test_negative_losses():
    assert check_divergence([-1.0, -2.0, -2.5, -1.0, 0.5]) is None
    assert check_divergence([-1.0, -2.0, 500.0]).epoch == 2


def test_resume_by_replaying_history():
    history = [1.0, 0.5, 0.2]
    monitor = DivergenceMonitor(1)
    for epoch, loss in enumerate(history):
        assert monitor.update(epoch, [loss]) is None
    assert monitor.update(3, [1e4]).epoch == 3


def test_pure_update_leaves_the_state_alone():
    state = divergence.init(2)
    new, found = divergence.update(state, 0, [1.0, 2.0])
    assert found is None and np.isnan(state.best).all() and list(new.best) == [1.0, 2.0]
    assert list(new.first) == [1.0, 2.0] and list(new.best_epoch) == [0, 0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="factor must be > 1"):
        DivergenceMonitor(1, factor=1.0)
    with pytest.raises(ValueError, match="patience must be a positive integer"):
        DivergenceMonitor(1, patience=0)
    with pytest.raises(ValueError, match="got 2 run names for 1 runs"):
        DivergenceMonitor(1, names=["a", "b"])
    with pytest.raises(ValueError, match="got 3 losses for 2 runs"):
        DivergenceMonitor(2).update(0, [1.0, 2.0, 3.0])
