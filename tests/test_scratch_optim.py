"""Every optimizer, step for step against torch.optim's single-tensor reference (foreach=False) on the same
parameters and gradients (float64), with a learning rate that changes every step as a schedule changes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnistbench.scratch.optim import SGD, Adagrad, Adam, AdamW, RMSprop

SHAPES = {"w1": (12, 5), "b1": (5,), "w2": (5, 3), "b2": (3,)}
STEPS = 25


def start_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {name: rng.normal(size=shape) for name, shape in SHAPES.items()}


def gradient_sequence(rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Gradients of varied scale, some exactly zero, as training produces."""
    sequence = []
    for step in range(STEPS):
        grads = {name: rng.normal(scale=10.0 ** -(step % 4), size=shape) for name, shape in SHAPES.items()}
        grads["b2"][0] = 0.0
        sequence.append(grads)
    return sequence


def assert_steps_match_torch(mine, theirs_factory, rng: np.random.Generator, params,  # noqa: ANN001
                             rates: list[float] | None = None) -> None:
    """Step both; with `rates`, set the learning rate of step t to rates[t] on both sides before it."""
    tensors = {name: torch.tensor(value.copy(), requires_grad=True) for name, value in params.items()}
    theirs = theirs_factory(list(tensors.values()))
    for step, grads in enumerate(gradient_sequence(rng)):
        if rates is not None:
            mine.lr = theirs.param_groups[0]["lr"] = rates[step]
        before = {name: grad.copy() for name, grad in grads.items()}
        mine.step(grads)
        assert all(np.array_equal(grads[name], before[name]) for name in grads), "step() modified the gradients"
        for name, tensor in tensors.items():
            tensor.grad = torch.tensor(grads[name])
        theirs.step()
        for name, tensor in tensors.items():
            np.testing.assert_allclose(params[name], tensor.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_steps_equal_torch_sgd(momentum: float) -> None:
    rng = np.random.default_rng(0)
    params = start_params(rng)
    before = {name: value.copy() for name, value in params.items()}
    mine = SGD(params, lr=0.05, momentum=momentum)
    assert_steps_match_torch(mine, lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=momentum), rng, params)
    assert not np.allclose(params["w1"], before["w1"])


@pytest.mark.parametrize(("lr", "beta1", "beta2", "eps"), [(1e-3, 0.9, 0.999, 1e-8), (0.05, 0.5, 0.9, 1e-3)])
def test_adam_steps_equal_torch_adam(lr: float, beta1: float, beta2: float, eps: float) -> None:
    rng = np.random.default_rng(1)
    params = start_params(rng)
    mine = Adam(params, lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    factory = lambda ps: torch.optim.Adam(ps, lr=lr, betas=(beta1, beta2), eps=eps, foreach=False)  # noqa: E731
    assert_steps_match_torch(mine, factory, rng, params)
    assert mine.steps == STEPS


def test_optimizers_do_not_modify_the_gradients() -> None:
    rng = np.random.default_rng(2)
    grads = {name: rng.normal(size=shape) for name, shape in SHAPES.items()}
    copies = {name: value.copy() for name, value in grads.items()}
    for optimizer in (SGD(start_params(rng), 0.1, 0.9), Adam(start_params(rng), 0.1)):
        optimizer.step(grads)
        optimizer.step(grads)
    assert all(np.array_equal(grads[name], copies[name]) for name in SHAPES)


def test_adam_on_one_flat_vector_equals_adam_per_parameter() -> None:
    """The scratch backend steps all parameters as one vector; the update must not depend on that."""
    rng = np.random.default_rng(3)
    params = start_params(rng)
    flat = np.concatenate([value.ravel() for value in params.values()])
    per_parameter, whole = Adam(params, lr=0.01), Adam({"all": flat}, lr=0.01)
    for grads in gradient_sequence(rng):
        per_parameter.step(grads)
        whole.step({"all": np.concatenate([grads[name].ravel() for name in SHAPES])})
    np.testing.assert_array_equal(flat, np.concatenate([value.ravel() for value in params.values()]))


RATES = [0.01 * (1 + np.cos(np.pi * t / STEPS)) / 2 + 1e-4 for t in range(STEPS)]
NEW_OPTIMIZERS = {
    "sgd-nesterov-weight_decay": (
        lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
        lambda ts: torch.optim.SGD(ts, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2, foreach=False)),
    "sgd-weight_decay": (
        lambda ps: SGD(ps, lr=0.05, weight_decay=1e-2),
        lambda ts: torch.optim.SGD(ts, lr=0.05, weight_decay=1e-2, foreach=False)),
    "adam-l2": (
        lambda ps: Adam(ps, lr=1e-3, weight_decay=0.1),
        lambda ts: torch.optim.Adam(ts, lr=1e-3, weight_decay=0.1, foreach=False)),
    "adamw": (
        lambda ps: AdamW(ps, lr=1e-3, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
        lambda ts: torch.optim.AdamW(ts, lr=1e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, foreach=False)),
    "rmsprop": (
        lambda ps: RMSprop(ps, lr=1e-3),
        lambda ts: torch.optim.RMSprop(ts, lr=1e-3, foreach=False)),
    "rmsprop-centered-momentum-weight_decay": (
        lambda ps: RMSprop(ps, lr=1e-3, alpha=0.9, eps=1e-6, momentum=0.8, centered=True, weight_decay=1e-2),
        lambda ts: torch.optim.RMSprop(ts, lr=1e-3, alpha=0.9, eps=1e-6, momentum=0.8, centered=True,
                                       weight_decay=1e-2, foreach=False)),
    "adagrad": (
        lambda ps: Adagrad(ps, lr=0.05),
        lambda ts: torch.optim.Adagrad(ts, lr=0.05, foreach=False)),
    "adagrad-initial_accumulator-weight_decay": (
        lambda ps: Adagrad(ps, lr=0.05, eps=1e-8, weight_decay=1e-2, initial_accumulator_value=0.5),
        lambda ts: torch.optim.Adagrad(ts, lr=0.05, eps=1e-8, weight_decay=1e-2, initial_accumulator_value=0.5,
                                       foreach=False)),
}


@pytest.mark.parametrize(("mine", "theirs"), NEW_OPTIMIZERS.values(), ids=NEW_OPTIMIZERS.keys())
def test_each_optimizer_steps_equal_torch_with_a_changing_learning_rate(mine, theirs) -> None:  # noqa: ANN001
    rng = np.random.default_rng(2)
    params = start_params(rng)
    before = {name: value.copy() for name, value in params.items()}
    optimizer = mine(params)
    assert_steps_match_torch(optimizer, theirs, rng, params, rates=RATES)
    assert optimizer.steps == STEPS
    assert not np.allclose(params["w1"], before["w1"])


def test_float32_parameters_stay_float32_under_every_optimizer() -> None:
    for mine, _ in NEW_OPTIMIZERS.values():
        params = {"w": np.ones((3, 2), dtype=np.float32)}
        optimizer = mine(params)
        optimizer.step({"w": np.full((3, 2), 0.5, dtype=np.float32)})
        assert params["w"].dtype == np.float32
        state_arrays = [array for name, arrays in vars(optimizer).items() if isinstance(arrays, dict)
                        and name != "params" for array in arrays.values()]
        assert state_arrays and all(array.dtype == np.float32 for array in state_arrays)
