"""Mine vs theirs through the two backends: every optimizer, both schedules, a deeper network and each activation.

backends/scratch.py against backends/torch.py (torch.optim, its fused or foreach path, and torch.optim.lr_scheduler)
in float64, from the same initial weights on the same real mini-batches (the fixture's 600 training rows, batches of
32 in the pipeline's order: 19 steps an epoch, 6 epochs, 114 steps). Every parameter must agree to 1e-10 relative
(elementwise, against the larger of the two values and 1e-3 of the array's largest entry, so that entries that
cross zero are held to the array's scale), and so must the learning rate of every step.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistbench.backends.scratch import ScratchBackend
from mnistbench.backends.torch import TorchBackend, build_scheduler
from mnistbench.params import NetworkParams, RunParams
from mnistbench.scratch.schedules import steps_per_epoch
from mnistbench.training import epoch_batches, generators, initial_weights

FIXTURE = Path(__file__).parent / "fixtures" / "mnist_small.npz"
EPOCHS, BATCH = 6, 32
RTOL = 1e-10

SGD = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
ADAM = {"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
ADAMW = {**ADAM, "optimizer": "adamw", "weight_decay": 0.01}
RMSPROP = {"optimizer": "rmsprop", "lr": 1e-3, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False,
           "weight_decay": 0.0}
ADAGRAD = {"optimizer": "adagrad", "lr": 0.02, "eps": 1e-10, "weight_decay": 0.0, "initial_accumulator_value": 0.0}
STEP = {"name": "step", "step_epochs": 2, "gamma": 0.5}
COSINE = {"name": "cosine", "warmup_epochs": 1, "min_lr": 1e-5}

# Every row of the optimizer table, each boolean both ways, non-zero weight decay everywhere.
OPTIMIZER_CASES = {
    "sgd": SGD,
    "sgd-weight_decay": {**SGD, "weight_decay": 1e-3},
    "sgd-momentum": {**SGD, "momentum": 0.9},
    "sgd-nesterov-weight_decay": {**SGD, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
    "adam": ADAM,
    "adam-l2": {**ADAM, "weight_decay": 1e-2},
    "adamw-no_decay": {**ADAMW, "weight_decay": 0.0},
    "adamw-decoupled": {**ADAMW, "weight_decay": 0.1},
    "rmsprop": RMSPROP,
    "rmsprop-centered": {**RMSPROP, "centered": True},
    "rmsprop-momentum-weight_decay": {**RMSPROP, "momentum": 0.9, "weight_decay": 1e-3},
    "rmsprop-centered-momentum-weight_decay": {**RMSPROP, "centered": True, "momentum": 0.5, "weight_decay": 1e-3},
    "adagrad": ADAGRAD,
    "adagrad-initial_accumulator-weight_decay": {**ADAGRAD, "initial_accumulator_value": 0.1, "weight_decay": 1e-3},
}
SCHEDULE_CASES = {
    "step-sgd-momentum": ({**SGD, "momentum": 0.9}, STEP),
    "step-adam": (ADAM, STEP),
    "cosine-warmup-adamw": (ADAMW, COSINE),
    "cosine-no_warmup-sgd-nesterov": ({**SGD, "momentum": 0.9, "nesterov": True}, {**COSINE, "warmup_epochs": 0}),
    "cosine-warmup-rmsprop": (RMSPROP, {**COSINE, "warmup_epochs": 2, "min_lr": 0.0}),
    "cosine-adagrad": (ADAGRAD, COSINE),
}
NETWORK_CASES = {f"{activation}-{depth}": (activation, hidden) for activation in ("relu", "tanh", "sigmoid")
                 for depth, hidden in (("depth1", (32,)), ("depth2", (32, 16)), ("depth3", (24, 24, 24)))}


@pytest.fixture(scope="module")
def real_rows() -> tuple[np.ndarray, np.ndarray]:
    """The fixture's 600 official training rows: images (600, 784) float32 in [0, 1], labels (600,) int64."""
    with np.load(FIXTURE, allow_pickle=False) as archive:
        rows = int(archive["train_rows"])
        return archive["images"][:rows].astype(np.float32) / 255.0, archive["labels"][:rows].astype(np.int64)


def run_params(impl: str, optimizer: dict, schedule: dict) -> RunParams:
    return RunParams(name=f"{impl}_case", impl=impl, epochs=EPOCHS, batch_size=BATCH, device="cpu",
                     schedule=schedule, **optimizer)


def train_both(rows, optimizer: dict, schedule: dict, activation: str = "relu", hidden=(32,), seed: int = 0):  # noqa: ANN001
    """Both backends from the seed's shared initial weights over the same batches: (scratch, torch, start)."""
    images, labels = rows
    network = NetworkParams(hidden=tuple(hidden), init="xavier_uniform", dtype="float64", activation=activation)
    start = initial_weights(seed, network)
    backends = [cls(run_params(impl, optimizer, schedule), start, images, labels, np.float64, 1, activation)
                for impl, cls in (("scratch", ScratchBackend), ("torch", TorchBackend))]
    for backend in backends:
        _, batch_rng = generators(seed)
        for _ in range(EPOCHS):
            assert np.all(np.isfinite(backend.train_epoch(epoch_batches(len(labels), BATCH, batch_rng))))
    return (*backends, start)


def relative_difference(mine: np.ndarray, theirs: np.ndarray) -> float:
    """max |mine - theirs| / max(|mine|, |theirs|, 1e-3 max |theirs|), elementwise."""
    scale = np.maximum(np.maximum(np.abs(mine), np.abs(theirs)), 1e-3 * np.max(np.abs(theirs)))
    return float(np.max(np.abs(mine - theirs) / scale))


def assert_backends_agree(scratch, torch_backend, start) -> float:  # noqa: ANN001
    """Same lr at every step, same parameters to RTOL; returns the largest relative parameter difference."""
    mine_lr, their_lr = scratch.learning_rates(), torch_backend.learning_rates()
    assert len(mine_lr) == len(their_lr) == EPOCHS * 19
    np.testing.assert_allclose(mine_lr, their_lr, rtol=1e-13, atol=0)
    mine, theirs = scratch.weights(), torch_backend.weights()
    assert list(mine) == list(theirs) == list(start)
    worst = 0.0
    for name in start:
        assert np.max(np.abs(theirs[name] - start[name])) > 1e-4, f"{name} did not move: the comparison is empty"
        worst = max(worst, relative_difference(mine[name], theirs[name]))
    assert worst < RTOL, f"max relative difference {worst:.3g}"
    return worst


@pytest.mark.parametrize("optimizer", OPTIMIZER_CASES.values(), ids=OPTIMIZER_CASES.keys())
def test_every_optimizer_matches_torch_optim_over_114_real_steps(real_rows, deterministic_torch, optimizer):
    assert_backends_agree(*train_both(real_rows, optimizer, {"name": "constant"}))


@pytest.mark.parametrize(("optimizer", "schedule"), SCHEDULE_CASES.values(), ids=SCHEDULE_CASES.keys())
def test_every_schedule_matches_torch_lr_scheduler_step_for_step(real_rows, deterministic_torch, optimizer, schedule):
    scratch, torch_backend, start = train_both(real_rows, optimizer, schedule)
    rates = scratch.learning_rates()
    assert len(np.unique(rates)) > 2, "the schedule did not change the learning rate"
    assert_backends_agree(scratch, torch_backend, start)


@pytest.mark.parametrize(("activation", "hidden"), NETWORK_CASES.values(), ids=NETWORK_CASES.keys())
def test_every_activation_and_depth_trains_the_same_network(real_rows, deterministic_torch, activation, hidden):
    scratch, torch_backend, start = train_both(real_rows, {**ADAM, "lr": 3e-3}, COSINE, activation, hidden)
    assert len(start) == 2 * (len(hidden) + 1)
    assert_backends_agree(scratch, torch_backend, start)


def reference_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The same optimizer over the same parameters through torch's single-tensor reference (foreach=False)."""
    settings = {**optimizer.defaults, "foreach": False}
    if "fused" in settings:  # RMSprop has no fused path, and no such argument
        settings["fused"] = None
    if isinstance(optimizer, torch.optim.AdamW):
        settings.pop("decoupled_weight_decay", None)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return type(optimizer)(params, **settings)


@pytest.mark.parametrize("optimizer", OPTIMIZER_CASES.values(), ids=OPTIMIZER_CASES.keys())
def test_torch_fast_optimizer_paths_equal_their_reference_within_rounding(real_rows, deterministic_torch, optimizer):
    """The torch baseline runs fused (SGD, Adam, AdamW, Adagrad) or foreach (RMSprop) kernels: held to foreach=False."""
    images, labels = real_rows
    network = NetworkParams(hidden=(32,), init="xavier_uniform", dtype="float64")
    start = initial_weights(0, network)
    run = run_params("torch", optimizer, COSINE)
    fast, reference = (TorchBackend(run, start, images, labels, np.float64, 1) for _ in range(2))
    assert fast.optimizer.defaults.get("fused") or fast.optimizer.defaults.get("foreach")
    reference.optimizer = reference_optimizer(reference.optimizer)
    reference.scheduler = build_scheduler(run, reference.optimizer, steps_per_epoch(len(labels), BATCH))
    assert not reference.optimizer.defaults["foreach"] and not reference.optimizer.defaults.get("fused")
    for backend in (fast, reference):
        _, batch_rng = generators(0)
        for _ in range(EPOCHS):
            backend.train_epoch(epoch_batches(len(labels), BATCH, batch_rng))
    np.testing.assert_array_equal(fast.learning_rates(), reference.learning_rates())
    for name, value in reference.weights().items():
        assert relative_difference(fast.weights()[name], value) < 1e-12, name


def test_run_params_of_a_case_are_a_complete_recipe():
    """The cases above fill every key their optimizer reads (a missing one would silently mean None)."""
    from mnistbench.params import OPTIMIZER_KEYS

    for optimizer in OPTIMIZER_CASES.values():
        assert set(optimizer) - {"optimizer", "lr"} == set(OPTIMIZER_KEYS[optimizer["optimizer"]])
    assert dataclasses.fields(RunParams)
