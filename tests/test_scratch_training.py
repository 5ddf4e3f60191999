"""The scratch backend inside the shared training loop: determinism, divergence, the Backend contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mnistbench.backends.scratch import ScratchBackend
from mnistbench.params import NetworkParams, RunParams
from mnistbench.training import initial_weights, train

MODEL = NetworkParams(hidden=16, init="xavier_uniform", dtype="float32")
ADAM = RunParams(name="scratch_adam", impl="scratch", optimizer="adam", lr=1e-3, momentum=0.0, beta1=0.9,
                 beta2=0.999, eps=1e-8, weight_decay=0.0, nesterov=False, epochs=3, batch_size=16, device="cpu")
SGD = dataclasses.replace(ADAM, name="scratch_sgd", optimizer="sgd", lr=0.1)


def synthetic_split(seed: int, rows: int) -> dict[str, np.ndarray]:
    """Images in [0, 1) whose label is the brightest of ten pixel blocks: learnable, like MNIST, by an MLP."""
    rng = np.random.default_rng(seed)
    images = rng.random((rows, 784), dtype=np.float32)
    labels = np.argmax(images[:, :780].reshape(rows, 10, 78).sum(axis=2), axis=1).astype(np.uint8)
    return {"images": images, "labels": labels}


TRAIN, VAL = synthetic_split(0, 200), synthetic_split(1, 50)


def trained(run: RunParams, seed: int, model: NetworkParams = MODEL) -> tuple[dict[str, np.ndarray], dict]:
    return train(run, model, seed, TRAIN, VAL, progress=False)


@pytest.mark.parametrize("run", [ADAM, SGD, dataclasses.replace(SGD, momentum=0.9, batch_size=0)])
def test_same_seed_gives_byte_identical_weights(run: RunParams) -> None:
    first, record = trained(run, seed=3)
    again, _ = trained(run, seed=3)
    assert record["status"] == "ok"
    assert all(first[name].tobytes() == again[name].tobytes() for name in first)


def test_different_seeds_give_different_weights() -> None:
    first, _ = trained(ADAM, seed=0)
    other, _ = trained(ADAM, seed=1)
    assert not np.array_equal(first["w1"], other["w1"])


def test_training_lowers_the_loss_and_records_the_history() -> None:
    _, record = trained(dataclasses.replace(ADAM, epochs=5), seed=0)
    losses = [entry["train_loss"] for entry in record["history"]]
    assert record["status"] == "ok" and record["epochs_completed"] == 5
    assert losses[-1] < losses[0]
    assert all(0.0 <= entry["val_accuracy"] <= 1.0 for entry in record["history"])


def test_absurd_learning_rate_ends_as_diverged_with_its_epoch() -> None:
    # lr 1e6 only drives the loss to ~1e23 (large but finite: the loss is stable); 1e10 overflows float32.
    absurd = dataclasses.replace(SGD, lr=1e10, epochs=20)
    with np.errstate(all="ignore"):
        weights, record = trained(absurd, seed=0)
    assert record["status"] == "diverged"
    assert 1 <= record["diverged_epoch"] <= 20
    assert record["epochs_completed"] == record["diverged_epoch"] - 1
    assert record["history"][-1]["train_loss"] is None
    assert len(record["history"]) == record["diverged_epoch"]


def test_train_epoch_stops_at_the_first_non_finite_loss() -> None:
    backend = ScratchBackend(dataclasses.replace(SGD, lr=1e30), initial_weights(0, MODEL), TRAIN["images"],
                             TRAIN["labels"].astype(np.int64), np.dtype(np.float32))
    batches = [np.arange(start, start + 10) for start in range(0, 200, 10)]
    with np.errstate(all="ignore"):
        losses = backend.train_epoch(batches)
    assert losses.dtype == np.float64
    assert 1 < len(losses) < len(batches)
    assert np.all(np.isfinite(losses[:-1])) and not np.isfinite(losses[-1])


def test_backend_weights_are_copies_in_the_shared_layout_and_dtype() -> None:
    start = initial_weights(0, dataclasses.replace(MODEL, dtype="float64"))
    backend = ScratchBackend(ADAM, start, TRAIN["images"], TRAIN["labels"].astype(np.int64), np.dtype(np.float64))
    weights = backend.weights()
    assert {name: w.shape for name, w in weights.items()} == {
        "w1": (784, 16), "b1": (16,), "w2": (16, 10), "b2": (10,)}
    assert all(w.dtype == np.float64 for w in weights.values())
    assert all(np.array_equal(weights[name], start[name]) for name in start)
    weights["w1"][:] = 0
    assert np.any(backend.weights()["w1"])
    assert backend.predict_logits(VAL["images"]).shape == (50, 10)
    assert backend.describe()["impl"] == "scratch" and backend.describe()["dtype"] == "float64"


def test_full_batch_step_equals_the_step_on_the_rows_in_permuted_order() -> None:
    """A full batch uses the stored rows as they are: the result matches the permuted batch up to rounding."""
    start = initial_weights(0, dataclasses.replace(MODEL, dtype="float64"))
    labels = TRAIN["labels"].astype(np.int64)
    order = np.random.default_rng(0).permutation(200)
    full = ScratchBackend(ADAM, start, TRAIN["images"], labels, np.dtype(np.float64))
    permuted = ScratchBackend(ADAM, start, TRAIN["images"][order], labels[order], np.dtype(np.float64))
    full.train_epoch([order])
    permuted.train_epoch([np.arange(200)])
    for name, value in full.weights().items():
        np.testing.assert_allclose(value, permuted.weights()[name], rtol=1e-9, atol=1e-12)


def test_float64_training_follows_float32_training_closely() -> None:
    single, _ = trained(ADAM, seed=2)
    double, _ = trained(ADAM, seed=2, model=dataclasses.replace(MODEL, dtype="float64"))
    assert double["w1"].dtype == np.float64 and single["w1"].dtype == np.float32
    np.testing.assert_allclose(single["w1"], double["w1"], atol=1e-4)


def test_out_of_range_batch_rows_are_refused() -> None:
    backend = ScratchBackend(ADAM, initial_weights(0, MODEL), TRAIN["images"], TRAIN["labels"].astype(np.int64),
                             np.dtype(np.float32))
    with pytest.raises(IndexError, match="200 rows"):
        backend.train_epoch([np.arange(10), np.array([5, 200])])
