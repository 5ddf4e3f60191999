"""Learning-rate schedules: the closed forms of mnistbench.scratch.schedules against torch.optim.lr_scheduler at
every step, and the record of the rates each backend used."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mnistbench.backends.torch import build_scheduler
from mnistbench.params import RunParams
from mnistbench.scratch.schedules import learning_rates, steps_per_epoch
from mnistbench.training import lr_curve

CASES = {
    "constant": ({"name": "constant"}, 7, 3),
    "step-every-epoch": ({"name": "step", "step_epochs": 1, "gamma": 0.1}, 5, 6),
    "step-every-3-epochs": ({"name": "step", "step_epochs": 3, "gamma": 0.7}, 13, 10),
    "step-longer-than-run": ({"name": "step", "step_epochs": 20, "gamma": 0.5}, 4, 5),
    "cosine-no-warmup": ({"name": "cosine", "warmup_epochs": 0, "min_lr": 0.0}, 13, 10),
    "cosine-warmup": ({"name": "cosine", "warmup_epochs": 2, "min_lr": 1e-4}, 17, 8),
    "cosine-full-batch": ({"name": "cosine", "warmup_epochs": 3, "min_lr": 1e-3}, 1, 12),
    "cosine-one-step-left": ({"name": "cosine", "warmup_epochs": 1, "min_lr": 1e-3}, 1, 2),
    "cosine-default-size": ({"name": "cosine", "warmup_epochs": 1, "min_lr": 0.0}, 1719, 15),
}


def torch_rates(schedule: dict, lr: float, epoch_steps: int, epochs: int) -> np.ndarray:
    """The rate torch's optimizer holds at each step, as the torch backend builds and steps its scheduler."""
    run = RunParams(name="m", impl="torch", optimizer="sgd", lr=lr, epochs=epochs, batch_size=1, schedule=schedule)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = build_scheduler(run, optimizer, epoch_steps)
    rates = []
    for _ in range(epoch_steps * epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return np.array(rates)


@pytest.mark.parametrize(("schedule", "epoch_steps", "epochs"), CASES.values(), ids=CASES.keys())
def test_every_step_equals_torch_lr_scheduler(schedule, epoch_steps, epochs):
    mine = learning_rates(schedule, 0.1, epoch_steps, epochs)
    theirs = torch_rates(schedule, 0.1, epoch_steps, epochs)
    assert mine.dtype == np.float64 and mine.shape == (epoch_steps * epochs,)
    np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=0)
    if schedule["name"] != "cosine":
        np.testing.assert_array_equal(mine, theirs)  # both multiply by gamma one boundary at a time


def test_step_decay_multiplies_by_gamma_every_step_epochs():
    rates = learning_rates({"name": "step", "step_epochs": 2, "gamma": 0.5}, 0.2, 3, 5)
    assert rates.tolist() == [0.2] * 6 + [0.1] * 6 + [0.05] * 3


def test_cosine_warms_up_linearly_peaks_then_reaches_min_lr_at_the_last_step():
    lr, min_lr, epoch_steps, epochs = 0.1, 1e-3, 5, 5  # 10 warmup steps, 14 decay steps
    rates = learning_rates({"name": "cosine", "warmup_epochs": 2, "min_lr": min_lr}, lr, epoch_steps, epochs)
    warmup = 2 * epoch_steps
    np.testing.assert_allclose(rates[:warmup], lr * np.arange(1, warmup + 1) / (warmup + 1), rtol=1e-15)
    assert rates[warmup] == lr
    assert np.all(np.diff(rates[warmup:]) < 0)
    assert rates[-1] == pytest.approx(min_lr, rel=1e-12)
    assert rates[warmup + 7] == pytest.approx((lr + min_lr) / 2, rel=1e-12)  # halfway down the decay


def test_cosine_without_warmup_starts_at_lr():
    rates = learning_rates({"name": "cosine", "warmup_epochs": 0, "min_lr": 0.0}, 0.05, 10, 3)
    assert rates[0] == 0.05 and rates[-1] == 0.0 and math.isclose(rates[1], 0.05 * (1 + math.cos(math.pi / 29)) / 2)


def test_the_constant_schedule_is_exactly_lr_at_every_step():
    rates = learning_rates({"name": "constant"}, 0.001, 430, 15)
    assert np.all(rates == 0.001) and len(rates) == 6450


def test_steps_per_epoch_counts_the_last_short_batch_and_full_batch_as_one():
    assert steps_per_epoch(55_000, 32) == 1719
    assert steps_per_epoch(55_000, 128) == 430
    assert steps_per_epoch(1000, 0) == 1
    assert steps_per_epoch(64, 64) == 1


def test_lr_curve_keeps_at_most_200_points_with_the_first_and_the_last():
    rates = learning_rates({"name": "cosine", "warmup_epochs": 1, "min_lr": 0.0}, 0.1, 1719, 15)
    curve = lr_curve(rates)
    assert len(curve["step"]) == len(curve["lr"]) == 200
    assert curve["step"][0] == 0 and curve["step"][-1] == len(rates) - 1
    assert curve["lr"] == rates[curve["step"]].tolist()
    assert np.all(np.diff(curve["step"]) > 0)
    assert lr_curve(rates[:7]) == {"step": list(range(7)), "lr": rates[:7].tolist()}
    assert lr_curve(np.empty(0)) == {"step": [], "lr": []}


@pytest.mark.parametrize("impl", ["scratch", "torch"])
def test_the_training_record_holds_the_rates_each_backend_used(impl, deterministic_torch):
    from mnistbench.params import NetworkParams
    from mnistbench.training import train

    rng = np.random.default_rng(0)
    train_set = {"images": rng.random((100, 784), dtype=np.float32),
                 "labels": rng.integers(0, 10, 100).astype(np.uint8)}
    val_set = {"images": train_set["images"][:10], "labels": train_set["labels"][:10]}
    schedule = {"name": "cosine", "warmup_epochs": 1, "min_lr": 1e-4}
    run = RunParams(name="m", impl=impl, optimizer="adamw", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.01, epochs=3, batch_size=16, device="cpu", schedule=schedule)
    network = NetworkParams(hidden=(8, 8), init="xavier_uniform", dtype="float64", activation="sigmoid")
    weights, record = train(run, network, 0, train_set, val_set, progress=False)
    expected = learning_rates(schedule, 0.01, 7, 3)
    assert record["lr_curve"]["step"] == list(range(21))
    np.testing.assert_allclose(record["lr_curve"]["lr"], expected, rtol=1e-13)
    np.testing.assert_allclose([entry["lr"] for entry in record["history"]], expected[[6, 13, 20]], rtol=1e-13)
    assert list(weights) == ["w1", "b1", "w2", "b2", "w3", "b3"]
