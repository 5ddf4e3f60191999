"""The one training loop shared by every implementation: initial weights, batch order, timing, history.

For a given seed every model starts from the same initial weights (drawn by one seeded NumPy generator) and
sees the same mini-batches in the same order, so that differences between models come from the optimizer
and the implementation alone. An implementation ("backend") only runs the batches it is handed.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
from tqdm import tqdm

from mnistbench.backends import N_CLASSES, N_INPUTS, Backend, make_backend
from mnistbench.io import load_npz, read_json, save_npz, write_json
from mnistbench.params import NetworkParams, Params, RunParams
from mnistbench.paths import Layout
from mnistbench.provenance import provenance
from mnistbench.scratch.initializers import xavier_uniform_mlp
from mnistbench.scratch.losses import cross_entropy

log = logging.getLogger(__name__)

def generators(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent streams for (initial weights, batch order), both fixed by the seed alone."""
    init_seq, batch_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(init_seq), np.random.default_rng(batch_seq)


def initial_weights(seed: int, network: NetworkParams) -> dict[str, np.ndarray]:
    """The shared starting point of every model for this seed: w1 (784, h1), b1 (h1,), ..., wL (h_{L-1}, 10), bL (10,)
    in network.dtype, drawn in order w1, w2, ... (Xavier-uniform) from the seed's init stream; biases zero."""
    init_rng, _ = generators(seed)
    return xavier_uniform_mlp(init_rng, N_INPUTS, network.hidden, N_CLASSES, np.dtype(network.dtype))


def epoch_batches(n_rows: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A fresh permutation of range(n_rows) cut into batches (the last may be smaller); batch_size 0 = full."""
    order = rng.permutation(n_rows)
    size = n_rows if batch_size == 0 else batch_size
    return [order[start : start + size] for start in range(0, n_rows, size)]


LR_CURVE_POINTS = 200


def lr_curve(learning_rates: np.ndarray, points: int = LR_CURVE_POINTS) -> dict[str, list]:
    """{"step": [...], "lr": [...]}: at most `points` evenly spaced steps (0-based) with the first and the last.

    learning_rates: float64 (steps,), the rate each optimizer step used.
    """
    if len(learning_rates) == 0:
        return {"step": [], "lr": []}
    steps = np.unique(np.linspace(0, len(learning_rates) - 1, num=min(points, len(learning_rates))).round().astype(int))
    return {"step": steps.tolist(), "lr": learning_rates[steps].tolist()}


def loss_and_accuracy(backend: Backend, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    logits = backend.predict_logits(images)
    return cross_entropy(logits, labels), float(np.mean(np.argmax(logits, axis=1) == labels))


def train(
    run: RunParams, network: NetworkParams, seed: int, train_set: dict[str, np.ndarray],
    val_set: dict[str, np.ndarray], threads: int = 1, progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train one model for one seed. Returns (final weights, record with history and timing).

    train_set / val_set: {"images": (n, 784) float32, "labels": (n,) uint8}. A non-finite loss stops training
    at once; the record then says status "diverged" and the epoch.
    """
    _, batch_rng = generators(seed)
    labels = train_set["labels"].astype(np.int64)
    val_labels = val_set["labels"].astype(np.int64)
    backend = make_backend(run, network, initial_weights(seed, network), train_set["images"], labels, threads)
    history: list[dict[str, Any]] = []
    status, diverged_epoch = "ok", None
    wall_start = time.perf_counter()
    epochs = tqdm(range(1, run.epochs + 1), desc=f"{run.name} seed {seed}", unit="epoch", disable=not progress)
    for epoch in epochs:
        batches = epoch_batches(len(labels), run.batch_size, batch_rng)
        start = time.perf_counter()
        losses = backend.train_epoch(batches)
        seconds = time.perf_counter() - start
        sizes = np.array([len(batch) for batch in batches[: len(losses)]], dtype=np.float64)
        train_loss = float(np.sum(losses * sizes) / np.sum(sizes))
        used = backend.learning_rates()
        entry = {"epoch": epoch, "train_loss": train_loss, "val_loss": None, "val_accuracy": None,
                 "seconds": seconds, "lr": float(used[-1]) if len(used) else None}
        if not np.isfinite(train_loss):
            status, diverged_epoch = "diverged", epoch
            entry["train_loss"] = None
            history.append(entry)
            log.warning("%s seed %d diverged at epoch %d (non-finite loss)", run.name, seed, epoch)
            break
        if len(val_labels):
            entry["val_loss"], entry["val_accuracy"] = loss_and_accuracy(backend, val_set["images"], val_labels)
        history.append(entry)
        epochs.set_postfix(loss=f"{train_loss:.4f}", val_acc=entry["val_accuracy"])
    train_seconds = float(sum(entry["seconds"] for entry in history))
    rows_seen = len(labels) * len(history)
    record = {
        "status": status,
        "diverged_epoch": diverged_epoch,
        "epochs_completed": len(history) if status == "ok" else len(history) - 1,
        "history": history,
        "lr_curve": lr_curve(backend.learning_rates()),
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(len(history), 1),
        "samples_per_second": rows_seen / train_seconds if train_seconds > 0 else None,
        "wall_seconds": time.perf_counter() - wall_start,
        "n_train": len(labels),
        "n_val": len(val_labels),
        "device": backend.device_name,
        "backend": backend.describe(),
    }
    return backend.weights(), record


def run_train(params: Params, model_name: str, seed: int, threads: int, layout: Layout) -> None:
    """The `train` stage: read prepared data, train, write weights and the training record atomically."""
    run = params.run(model_name)
    params.check_seed(seed)
    needed_by = f"train {model_name} seed {seed}"
    train_set = load_npz(layout.prepared_split("train"), needed_by)
    val_set = load_npz(layout.prepared_split("val"), needed_by)
    data_stats = read_json(layout.stats_json, needed_by)
    with threadpool_limits(limits=threads):
        blas = [{"library": pool["internal_api"], "threads": pool["num_threads"]} for pool in threadpool_info()]
        weights, record = train(run, params.network, seed, train_set, val_set, threads)
    record.update(
        model=model_name,
        seed=seed,
        run=params.mapping["models"][model_name],
        network=params.mapping["network"],
        data=data_stats,
        threads=threads,
        blas=blas,
        peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # Other jobs sharing the cores slow this one down: the 1-minute load average tells how busy the machine was.
        load_average=os.getloadavg()[0],
        provenance=provenance(threads=threads, device=record["device"]),
    )
    save_npz(layout.weights(model_name, seed), weights)
    write_json(layout.train_report(model_name, seed), record)
    log.info("%s seed %d: %s after %d epochs, %.2f s training", model_name, seed, record["status"],
             record["epochs_completed"], record["train_seconds"])
