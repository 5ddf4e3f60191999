"""The default params give byte-identical scratch weights to the code before issue 15 (deeper networks, new
optimizers, schedules).

The oracle is tests/frozen_scratch_v1, a verbatim copy of src/mnistbench/scratch as it stood then: the same
machine runs both here, so the comparison is exact wherever the tests run (whatever its BLAS kernel or SIMD),
instead of sha256s that only hold on the machine that recorded them. Both are trained from the pipeline's
shared initial weights on the pipeline's batch order, for the default recipes scratch_sgd and scratch_adam.
"""

from __future__ import annotations

import numpy as np
import pytest
from frozen_scratch_v1.initializers import xavier_uniform_mlp as frozen_xavier_uniform_mlp
from frozen_scratch_v1.network import MLP as FrozenMLP
from frozen_scratch_v1.optim import SGD as FrozenSGD
from frozen_scratch_v1.optim import Adam as FrozenAdam
from threadpoolctl import threadpool_limits

from mnistbench.backends import make_backend
from mnistbench.params import load_params
from mnistbench.training import epoch_batches, generators, initial_weights

EPOCHS = 2


@pytest.fixture(scope="module")
def fixture_rows() -> tuple[np.ndarray, np.ndarray]:
    """The fixture's first 600 rows as the prepare stage scales them: (600, 784) float32 in [0, 1], (600,) int64."""
    data = np.load("tests/fixtures/mnist_small.npz")
    return (data["images"][:600] / np.float32(255.0)).astype(np.float32), data["labels"][:600].astype(np.int64)


def frozen_training(run, weights, images, labels, seed) -> dict[str, np.ndarray]:  # noqa: ANN001
    """The pre-issue-15 loop: the frozen MLP and optimizer over the flat parameter vector, batch by batch."""
    network = FrozenMLP(weights, np.float32)
    flat = {"all": network.flat_params}
    if run.optimizer == "sgd":
        optimizer = FrozenSGD(flat, lr=run.lr, momentum=run.momentum)
    else:
        optimizer = FrozenAdam(flat, lr=run.lr, beta1=run.beta1, beta2=run.beta2, eps=run.eps)
    _, batch_rng = generators(seed)
    for _ in range(run.epochs):
        for rows in epoch_batches(len(labels), run.batch_size, batch_rng):
            network.loss_and_gradients(images[rows], labels[rows])
            optimizer.step({"all": network.flat_grads})
    return network.weights()


def test_the_default_network_starts_from_the_same_initial_weights():
    network = load_params("params.yaml").network
    today = initial_weights(0, network)
    before = frozen_xavier_uniform_mlp(generators(0)[0], 784, 128, 10, np.dtype(np.float32))
    assert network.hidden == (128,)
    assert list(today) == list(before)
    assert all(today[name].tobytes() == before[name].tobytes() for name in before)


@pytest.mark.parametrize("fused", [False, True], ids=["numpy", "fused"])  # both paths, whichever a job would take
@pytest.mark.parametrize("model", ["scratch_sgd", "scratch_adam"])
@pytest.mark.parametrize("seed", [0, 1])
def test_default_recipes_train_byte_identical_weights(fixture_rows, model, seed, fused, monkeypatch):
    if not fused:
        monkeypatch.setattr("mnistbench.backends.scratch.kernels", lambda: None)
    params = load_params("params.yaml")
    run = params.models[model]
    assert (run.schedule, run.weight_decay, params.network.activation) == ({"name": "constant"}, 0.0, "relu")
    run = type(run)(**{**run.__dict__, "epochs": EPOCHS})
    images, labels = fixture_rows
    with threadpool_limits(limits=1):
        start = initial_weights(seed, params.network)
        expected = frozen_training(run, start, images, labels, seed)
        backend = make_backend(run, params.network, start, images, labels, threads=1)
        assert (backend.optimizer.kernels is not None) is fused
        _, batch_rng = generators(seed)
        for _ in range(EPOCHS):
            backend.train_epoch(epoch_batches(len(labels), run.batch_size, batch_rng))
    trained = backend.weights()
    assert list(trained) == list(expected)
    assert not np.array_equal(trained["w1"], start["w1"])
    for name in expected:
        assert trained[name].dtype == expected[name].dtype == np.float32
        assert trained[name].tobytes() == expected[name].tobytes(), name
