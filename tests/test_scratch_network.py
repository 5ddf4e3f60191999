"""The scratch MLP: gradients against finite differences and PyTorch, the cs231n sanity checks, initialization."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mnistbench.scratch.initializers import xavier_uniform_mlp
from mnistbench.scratch.network import MLP, count_layers, param_names
from mnistbench.scratch.optim import Adam

N_IN, HIDDEN, N_CLASSES = 784, 16, 10
PARAM_NAMES = param_names(2)
ACTIVATIONS = ("relu", "tanh", "sigmoid")
DEPTHS = {"depth1": [HIDDEN], "depth3": [HIDDEN, HIDDEN, HIDDEN]}
NUMPY_ACTIVATIONS = {"relu": lambda x: np.maximum(x, 0), "tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x))}
TORCH_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """cs231n's relative error, elementwise max."""
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def small_problem(seed: int = 0, batch: int = 8, hidden=HIDDEN) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:  # noqa: ANN001
    """Float64 weights with non-zero biases, inputs and labels for a small batch."""
    rng = np.random.default_rng(seed)
    weights = xavier_uniform_mlp(rng, N_IN, hidden, N_CLASSES, np.dtype(np.float64))
    for name in weights:
        if name.startswith("b"):
            weights[name] = rng.normal(0.0, 0.1, weights[name].shape)
    return weights, rng.random((batch, N_IN)), rng.integers(0, N_CLASSES, batch)


def numeric_gradient(network: MLP, images: np.ndarray, labels: np.ndarray, name: str, index: tuple,
                     step: float = 1e-5) -> float:
    param = network.params[name]
    original = param[index]
    param[index] = original + step
    loss_plus = network.loss_and_gradients(images, labels)[0]
    param[index] = original - step
    loss_minus = network.loss_and_gradients(images, labels)[0]
    param[index] = original
    return (loss_plus - loss_minus) / (2 * step)


def sampled_indices(shape: tuple[int, ...], rng: np.random.Generator, limit: int = 40) -> list[tuple[int, ...]]:
    """Every index of a small parameter; `limit` random ones of a large one."""
    if int(np.prod(shape)) <= limit:
        return list(np.ndindex(shape))
    return [tuple(int(rng.integers(0, size)) for size in shape) for _ in range(limit)]


def pre_activations(weights: dict[str, np.ndarray], images: np.ndarray, activation: str) -> list[np.ndarray]:
    """The input of every hidden activation, by a plain float64 forward pass."""
    out, found = images, []
    for layer in range(1, count_layers(weights)):
        found.append(out @ weights[f"w{layer}"] + weights[f"b{layer}"])
        out = NUMPY_ACTIVATIONS[activation](found[-1])
    return found


def far_from_relu_kinks(weights: dict[str, np.ndarray], images: np.ndarray, margin: float = 1e-4) -> bool:
    """No pre-activation within `margin` of 0: a +-1e-5 step of one weight or bias (inputs in [0, 1), weights
    of order 1) moves any pre-activation by far less, so no finite difference crosses a ReLU kink."""
    return all(float(np.min(np.abs(pre))) > margin for pre in pre_activations(weights, images, "relu"))


@pytest.mark.parametrize("hidden", DEPTHS.values(), ids=DEPTHS.keys())
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_of_every_parameter_matches_centred_finite_differences(activation: str, hidden: list[int]) -> None:
    # the first seed whose ReLU pre-activations all keep clear of 0 (the finite differences are then exact)
    seed = next(seed for seed in range(50) if far_from_relu_kinks(*small_problem(seed, hidden=hidden)[:2]))
    weights, images, labels = small_problem(seed, hidden=hidden)
    network = MLP(weights, np.float64, activation)
    _, grads = network.loss_and_gradients(images, labels)
    analytic = {name: grad.copy() for name, grad in grads.items()}
    assert list(analytic) == list(param_names(len(hidden) + 1))
    for name, gradient in analytic.items():
        indices = sampled_indices(gradient.shape, np.random.default_rng(1))
        numeric = np.array([numeric_gradient(network, images, labels, name, index) for index in indices])
        picked = np.array([gradient[index] for index in indices])
        assert np.any(picked != 0), name
        # cs231n: below 1e-5 is a pass for smooth losses; a wrong gradient gives 1e-2 or more. The worst seen:
        # 1.4e-6 (tanh, depth 3, on its smallest entries); relu depth 1 gives 8e-9.
        assert rel_error(picked, numeric) < 1e-5, name


@pytest.mark.parametrize("hidden", DEPTHS.values(), ids=DEPTHS.keys())
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_equal_pytorch_autograd_in_float64(activation: str, hidden: list[int]) -> None:
    weights, images, labels = small_problem(seed=3, batch=32, hidden=hidden)
    loss, grads = MLP(weights, np.float64, activation).loss_and_gradients(images, labels)
    tensors = {name: torch.tensor(value, requires_grad=True) for name, value in weights.items()}
    out, n_layers = torch.tensor(images), count_layers(weights)
    for layer in range(1, n_layers):
        out = TORCH_ACTIVATIONS[activation](out @ tensors[f"w{layer}"] + tensors[f"b{layer}"])
    logits = out @ tensors[f"w{n_layers}"] + tensors[f"b{n_layers}"]
    torch_loss = torch.nn.functional.cross_entropy(logits, torch.tensor(labels))
    torch_loss.backward()
    assert loss == pytest.approx(torch_loss.item(), rel=1e-12)
    for name, tensor in tensors.items():
        np.testing.assert_allclose(grads[name], tensor.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_logits_of_a_deep_network_equal_a_plain_forward_pass(activation: str) -> None:
    weights, images, _ = small_problem(batch=5, hidden=[12, 8, 6])
    pre = pre_activations(weights, images, activation)
    expected = NUMPY_ACTIVATIONS[activation](pre[-1]) @ weights["w4"] + weights["b4"]
    np.testing.assert_allclose(MLP(weights, np.float64, activation).logits(images), expected, rtol=1e-12)


def test_sigmoid_saturates_to_its_limits_without_overflow_warnings() -> None:
    from mnistbench.scratch.activations import sigmoid_forward

    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out, _ = sigmoid_forward(np.array([[-1000.0, 0.0, 1000.0]], dtype=np.float32))
    assert out.tolist() == [[0.0, 0.5, 1.0]]


def test_loss_at_xavier_init_is_about_ln_10() -> None:
    rng = np.random.default_rng(0)
    weights = xavier_uniform_mlp(rng, N_IN, 128, N_CLASSES, np.dtype(np.float32))
    images = rng.random((500, N_IN), dtype=np.float32) * 0.1
    loss, _ = MLP(weights, np.float32).loss_and_gradients(images, rng.integers(0, N_CLASSES, 500))
    assert abs(loss - math.log(10)) < 0.1


def test_network_overfits_20_examples_to_near_zero_loss() -> None:
    rng = np.random.default_rng(0)
    network = MLP(xavier_uniform_mlp(rng, N_IN, 64, N_CLASSES, np.dtype(np.float64)), np.float64)
    images, labels = rng.random((20, N_IN)), rng.integers(0, N_CLASSES, 20)
    optimizer = Adam(network.params, lr=1e-2)
    for _ in range(200):
        loss, grads = network.loss_and_gradients(images, labels)
        optimizer.step(grads)
    assert loss < 1e-3
    assert np.array_equal(np.argmax(network.logits(images), axis=1), labels)


def test_float32_network_computes_in_float32() -> None:
    weights, images, labels = small_problem()
    network = MLP(weights, np.float32)
    _, grads = network.loss_and_gradients(images.astype(np.float32), labels)
    assert all(grads[name].dtype == np.float32 for name in PARAM_NAMES)
    assert network.logits(images.astype(np.float32)).dtype == np.float32


def test_logits_equal_the_forward_pass_used_in_training() -> None:
    weights, images, _ = small_problem(batch=5)
    network = MLP(weights, np.float64)
    expected = np.maximum(images @ weights["w1"] + weights["b1"], 0) @ weights["w2"] + weights["b2"]
    np.testing.assert_allclose(network.logits(images), expected, rtol=1e-12)


def test_xavier_uniform_mlp_shapes_bounds_and_zero_biases() -> None:
    weights = xavier_uniform_mlp(np.random.default_rng(0), N_IN, 128, N_CLASSES, np.dtype(np.float32))
    assert {name: w.shape for name, w in weights.items()} == {
        "w1": (N_IN, 128), "b1": (128,), "w2": (128, N_CLASSES), "b2": (N_CLASSES,)}
    assert all(w.dtype == np.float32 for w in weights.values())
    for name, (fan_in, fan_out) in {"w1": (N_IN, 128), "w2": (128, N_CLASSES)}.items():
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert np.max(np.abs(weights[name])) <= bound
        assert np.max(np.abs(weights[name])) > 0.95 * bound  # fills the interval, not a narrower one
        assert abs(np.std(weights[name]) - bound / math.sqrt(3)) < 0.05 * bound
    assert not np.any(weights["b1"]) and not np.any(weights["b2"])


def test_xavier_uniform_mlp_draws_each_layer_in_order_from_one_stream() -> None:
    deep = xavier_uniform_mlp(np.random.default_rng(5), N_IN, [32, 16], N_CLASSES, np.dtype(np.float64))
    rng = np.random.default_rng(5)
    for name, (fan_in, fan_out) in {"w1": (N_IN, 32), "w2": (32, 16), "w3": (16, N_CLASSES)}.items():
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert np.array_equal(deep[name], rng.uniform(-bound, bound, size=(fan_in, fan_out)))
    assert list(deep) == ["w1", "b1", "w2", "b2", "w3", "b3"]
    assert {name: deep[name].shape for name in ("b1", "b2", "b3")} == {"b1": (32,), "b2": (16,), "b3": (N_CLASSES,)}
    assert not any(np.any(deep[name]) for name in ("b1", "b2", "b3"))


def test_an_int_and_a_one_element_list_give_the_same_network() -> None:
    as_int = xavier_uniform_mlp(np.random.default_rng(2), N_IN, 24, N_CLASSES, np.dtype(np.float32))
    as_list = xavier_uniform_mlp(np.random.default_rng(2), N_IN, [24], N_CLASSES, np.dtype(np.float32))
    assert all(as_int[name].tobytes() == as_list[name].tobytes() for name in PARAM_NAMES)


def test_xavier_uniform_mlp_is_fixed_by_the_generator_state() -> None:
    first = xavier_uniform_mlp(np.random.default_rng(7), N_IN, 32, N_CLASSES, np.dtype(np.float64))
    again = xavier_uniform_mlp(np.random.default_rng(7), N_IN, 32, N_CLASSES, np.dtype(np.float64))
    other = xavier_uniform_mlp(np.random.default_rng(8), N_IN, 32, N_CLASSES, np.dtype(np.float64))
    assert all(np.array_equal(first[name], again[name]) for name in PARAM_NAMES)
    assert not np.array_equal(first["w1"], other["w1"])
