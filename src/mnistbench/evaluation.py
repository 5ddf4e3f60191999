"""The evaluate stage: test accuracy, loss, per-class metrics, worst mistakes and inference throughput of one run.

The model is run by its own implementation (scratch: NumPy; torch: PyTorch on the run's device). Metrics are
computed from the confusion matrix in NumPy, with scikit-learn's definitions (tests/test_evaluation.py holds them
to scikit-learn): importing sklearn.metrics and scipy.special took longer than the whole evaluation.
A diverged run (non-finite weights) still gets a record: its metrics are computed as is from what the weights
output (NumPy's argmax lets a NaN win, so an all-NaN row predicts class 0), non-finite numbers are stored as
null, and worst mistakes are taken from rows with finite logits only.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mnistbench.backends import N_CLASSES, Backend, make_backend
from mnistbench.data.checksums import array_sha256, file_digest
from mnistbench.io import load_npz, read_json, write_json
from mnistbench.params import Params
from mnistbench.paths import Layout
from mnistbench.provenance import job_timing, provenance
from mnistbench.scratch.losses import cross_entropy

log = logging.getLogger(__name__)

CLASSES = list(range(N_CLASSES))


def classification_metrics(labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """labels, predicted: (n,) int in [0, 10) -> accuracy, per-class precision/recall/F1/support, macro F1, confusion
    matrix, as scikit-learn defines them (zero_division=0: a class never predicted has precision 0).

    The confusion matrix has rows = true label, columns = predicted label (scikit-learn's convention).
    """
    matrix = confusion(labels, predicted)
    true_positives = np.diag(matrix).astype(np.float64)
    support, predicted_count = matrix.sum(axis=1), matrix.sum(axis=0)
    f1 = divide_or_zero(2.0 * true_positives, support + predicted_count.astype(np.float64))
    return {
        "test_accuracy": float(np.mean(labels == predicted)),
        "per_class": {"precision": divide_or_zero(true_positives, predicted_count).tolist(),
                      "recall": divide_or_zero(true_positives, support).tolist(), "f1": f1.tolist(),
                      "support": support.tolist()},
        "macro_f1": float(np.mean(f1)),
        "confusion_matrix": matrix.tolist(),
    }


def confusion(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(N_CLASSES, N_CLASSES) int64 counts: row = true label, column = predicted label."""
    pairs = np.asarray(labels, dtype=np.int64) * N_CLASSES + np.asarray(predicted, dtype=np.int64)
    return np.bincount(pairs, minlength=N_CLASSES * N_CLASSES).reshape(N_CLASSES, N_CLASSES)


def divide_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator in float64, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(denominator), where=denominator != 0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (n, k) float logits, computed as scipy.special.softmax does (shift by the row maximum)."""
    shifted = np.exp(logits - np.max(logits, axis=1, keepdims=True))
    return shifted / np.sum(shifted, axis=1, keepdims=True)


def worst_mistakes(
    probabilities: np.ndarray, labels: np.ndarray, dataset_indices: np.ndarray | None, limit: int
) -> list[dict[str, Any]]:
    """The most confidently wrong rows, most confident first, at most `limit` of them.

    probabilities: (n, 10) softmax outputs; labels: (n,) int; dataset_indices: (n,) row of each test row in
    data/raw/mnist.npz, or None. Rows whose probabilities are not finite are left out.
    """
    predicted = np.argmax(probabilities, axis=1)
    confidence = probabilities[np.arange(len(labels)), predicted]
    wrong = np.flatnonzero((predicted != labels) & np.all(np.isfinite(probabilities), axis=1))
    ranked = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
    return [
        {
            "test_row": int(row),
            "dataset_index": None if dataset_indices is None else int(dataset_indices[row]),
            "label": int(labels[row]),
            "predicted": int(predicted[row]),
            "probability": float(confidence[row]),
            "probabilities": probabilities[row].astype(np.float64).tolist(),
        }
        for row in ranked
    ]


def inference_throughput(backend: Backend, images: np.ndarray, repeats: int, threads: int) -> dict[str, Any]:
    """Best of `repeats` timed passes of `backend.predict_logits` over (n, 784) images, after one warm-up pass.

    A pass goes from host images to host logits, so on CUDA it includes both copies (and waits for the device).
    """
    backend.predict_logits(images)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend.predict_logits(images)
        timings.append(time.perf_counter() - start)
    best = min(timings)
    return {
        "images_per_second": len(images) / best if best > 0 else None,
        "best_seconds": best,
        "repeats": repeats,
        "rows": len(images),
        "device": backend.device_name,
        "threads": threads,
    }


def evaluate_logits(
    logits: np.ndarray, labels: np.ndarray, dataset_indices: np.ndarray | None, mistakes: int
) -> dict[str, Any]:
    """logits (n, 10), labels (n,) int64 -> loss, metrics and worst mistakes (non-finite numbers as None)."""
    logits64 = logits.astype(np.float64)
    predicted = np.argmax(logits64, axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        probabilities = softmax(logits64)
        test_loss = cross_entropy(logits64, labels)
    return {
        "n_test": len(labels),
        "test_loss": finite_or_none(test_loss),
        "nonfinite_rows": int(np.sum(~np.all(np.isfinite(logits64), axis=1))),
        **classification_metrics(labels, predicted),
        "worst_mistakes": worst_mistakes(probabilities, labels, dataset_indices, mistakes),
    }


def time_to_target(history: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """The first epoch whose validation accuracy reaches `target`, and the training seconds up to its end.

    history: a training record's per-epoch entries ({"epoch", "val_accuracy" or None, "seconds"}, in order).
    Returns {"target", "epoch", "seconds"}; epoch and seconds are None when no epoch reached the target.
    """
    elapsed = 0.0
    for entry in history:
        elapsed += entry["seconds"]
        accuracy = entry.get("val_accuracy")
        if accuracy is not None and accuracy >= target:
            return {"target": target, "epoch": entry["epoch"], "seconds": elapsed}
    return {"target": target, "epoch": None, "seconds": None}


def finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def run_evaluate(params: Params, model_name: str, seed: int, threads: int, layout: Layout) -> None:
    """The `evaluate` stage: read weights, test rows and train record; write reports/eval/MODEL/seedN.json."""
    run = params.run(model_name)
    params.check_seed(seed)
    needed_by = f"evaluate {model_name} seed {seed}"
    weights = load_npz(layout.weights(model_name, seed), needed_by)
    test_set = load_npz(layout.prepared_split("test"), needed_by)
    train_record = read_json(layout.train_report(model_name, seed), needed_by)
    images, labels = test_set["images"], test_set["labels"].astype(np.int64)
    with threadpool_limits(limits=threads):
        backend = make_backend(run, params.network, weights, images[:0], labels[:0], threads)
        logits = backend.predict_logits(images)
        inference = inference_throughput(backend, images, params.evaluate.throughput_repeats, threads)
    record = {
        "model": model_name,
        "seed": seed,
        "impl": run.impl,
        "status": train_record.get("status", "ok"),
        "diverged_epoch": train_record.get("diverged_epoch"),
        "time_to_target": time_to_target(train_record.get("history", []), params.evaluate.target_accuracy),
        **evaluate_logits(logits, labels, test_set.get("indices"), params.evaluate.worst_mistakes),
        "inference": inference,
        "inputs": {
            "weights_sha256": file_digest(layout.weights(model_name, seed), "sha256"),
            "test_images_sha256": array_sha256(test_set["images"]),
            "test_labels_sha256": array_sha256(test_set["labels"]),
        },
        "provenance": provenance(threads=threads, device=backend.device_name),
    }
    record["job"] = job_timing()
    write_json(layout.eval_report(model_name, seed), record)
    log.info("%s seed %d: test accuracy %.4f, %.0f images/s on %s", model_name, seed, record["test_accuracy"],
             inference["images_per_second"] or 0.0, backend.device_name)
