"""SGD and Adam, step for step against torch.optim on the same parameters and gradients (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnistbench.scratch.optim import SGD, Adam

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


def assert_steps_match_torch(mine, theirs_factory, rng: np.random.Generator, params) -> None:  # noqa: ANN001
    tensors = {name: torch.tensor(value.copy(), requires_grad=True) for name, value in params.items()}
    theirs = theirs_factory(list(tensors.values()))
    for grads in gradient_sequence(rng):
        mine.step(grads)
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
