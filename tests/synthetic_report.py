"""Synthetic inputs of the report stage (a helper module, no tests): a params file, MNIST-like images, and
the train and eval records every (model, seed) would have, shaped as run_train and run_evaluate write them.

The numbers are random but self-consistent: each eval record's accuracy, confusion matrix and per-class scores
come from one set of simulated predictions, computed with scikit-learn.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from mnistbench.evaluation import time_to_target
from mnistbench.io import save_npz, write_json
from mnistbench.params import Params, load_params
from mnistbench.paths import Layout
from mnistbench.scratch import schedules
from mnistbench.training import lr_curve

REPO_ROOT = Path(__file__).resolve().parents[1]
RAW_ROWS = 300
MODELS = {
    "scratch_sgd": {"impl": "scratch", "optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False,
                    "weight_decay": 0.0, "epochs": 4, "batch_size": 64, "schedule": {"name": "constant"}},
    "scratch_adam": {"impl": "scratch", "optimizer": "adam", "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                     "weight_decay": 0.0, "epochs": 3, "batch_size": 128, "schedule": {"name": "constant"}},
    "torch_adam": {"impl": "torch", "optimizer": "adam", "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                   "weight_decay": 0.0, "epochs": 3, "batch_size": 128, "schedule": {"name": "constant"},
                   "device": "cpu"},
}
DATA = {"source": "fixture.npz", "split": "official", "test_fraction": 0.2, "split_seed": 42, "n_train": 500,
        "n_val": 100, "n_test": 200, "normalize": "unit"}
NETWORK = {"hidden": 16, "activation": "relu", "init": "xavier_uniform", "dtype": "float32"}
EVALUATE = {"worst_mistakes": 16, "throughput_repeats": 5, "target_accuracy": 0.97}


def write_params(root: Path, seeds: tuple[int, ...] = (0, 1, 2), data: dict[str, Any] | None = None,
                 models: dict[str, Any] | None = None) -> Params:
    """data: values that replace DATA's."""
    mapping = {"data": DATA | (data or {}), "network": NETWORK, "seeds": list(seeds), "models": models or MODELS,
               "evaluate": EVALUATE}
    # The params in force come from their own file (as with `mnistbench --params`); the repository's params.yaml
    # beside them is what the report lists differences from.
    shutil.copyfile(REPO_ROOT / "params.yaml", root / "params.yaml")
    path = root / "synthetic-params.yaml"
    path.write_text(yaml.safe_dump(mapping, sort_keys=False), encoding="utf-8")
    return load_params(path)


def provenance_record(date: str) -> dict[str, Any]:
    return {"date": date, "git": {"commit": "0123456789abcdef", "dirty": False}, "python": "3.11.9",
            "packages": {"numpy": "2.0", "torch": "2.3"}, "platform": "Linux-x86_64", "cpu": "Test CPU",
            "cpu_count": 2, "threads": 1, "device": "cpu"}


def train_record(model: str, seed: int, epochs: int, rng: np.random.Generator, diverge_at: int | None,
                 n_val: int, skill: float | None = None) -> dict[str, Any]:
    """skill: the final validation accuracy to aim at (None: about 0.8 + 0.03 per epoch)."""
    history = []
    for epoch in range(1, epochs + 1):
        diverged = diverge_at == epoch
        history.append({
            "epoch": epoch,
            "train_loss": None if diverged else float(1.0 / epoch + rng.uniform(0, 0.05)),
            "val_loss": None if diverged or not n_val else float(1.1 / epoch + rng.uniform(0, 0.05)),
            "val_accuracy": None if diverged or not n_val else _val_accuracy(epoch, epochs, rng, skill),
            "seconds": float(rng.uniform(0.5, 1.5)),
        })
        if diverged:
            break
    train_seconds = sum(entry["seconds"] for entry in history)
    return {
        "status": "diverged" if diverge_at else "ok", "diverged_epoch": diverge_at,
        "epochs_completed": len(history) - 1 if diverge_at else len(history), "history": history,
        "train_seconds": train_seconds, "seconds_per_epoch": train_seconds / len(history),
        "samples_per_second": 500 * len(history) / train_seconds, "wall_seconds": train_seconds + 0.3,
        "n_train": 500, "n_val": n_val, "device": "cpu", "model": model, "seed": seed, "threads": 1,
        "provenance": provenance_record(f"2025-01-01T00:0{seed}:30+00:00"),
    }


def _val_accuracy(epoch: int, epochs: int, rng: np.random.Generator, skill: float | None) -> float:
    if skill is None:
        return float(0.8 + 0.03 * epoch + rng.uniform(0, 0.01))
    return float(min(1.0, skill - 0.1 * (epochs - epoch) / epochs + rng.normal(0, 0.004)))


def eval_record(model: str, seed: int, rng: np.random.Generator, diverged: bool, n_test: int,
                skill: float | None = None) -> dict[str, Any]:
    """skill: the test accuracy to aim at (None: between 0.85 and 0.98)."""
    labels = rng.integers(0, 10, n_test)
    error_rate = 0.9 if diverged else (rng.uniform(0.02, 0.15) if skill is None else 1 - skill + rng.normal(0, 0.004))
    wrong = rng.random(n_test) < error_rate
    predicted = np.where(wrong, (labels + rng.integers(1, 10, n_test)) % 10, labels)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=range(10),
                                                                     zero_division=0)
    wrong_rows = np.flatnonzero(predicted != labels)[:5]
    mistakes = [{"test_row": int(row), "dataset_index": int(row % RAW_ROWS), "label": int(labels[row]),
                 "predicted": int(predicted[row]), "probability": float(rng.uniform(0.5, 1.0)),
                 "probabilities": [0.1] * 10} for row in wrong_rows]
    return {
        "model": model, "seed": seed, "impl": "scratch", "status": "diverged" if diverged else "ok",
        "diverged_epoch": 2 if diverged else None, "n_test": n_test,
        "test_accuracy": float(np.mean(predicted == labels)), "test_loss": float(rng.uniform(0.1, 0.4)),
        "per_class": {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
                      "support": support.tolist()},
        "macro_f1": float(f1_score(labels, predicted, average="macro")),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=range(10)).tolist(),
        "worst_mistakes": mistakes,
        "inference": {"images_per_second": float(rng.uniform(1e5, 1e6)), "best_seconds": 0.001, "repeats": 5,
                      "rows": n_test, "device": "cpu", "threads": 1},
        "provenance": provenance_record(f"2025-01-01T00:1{seed}:00+00:00"),
    }


def write_results(root: Path, params: Params, diverged: frozenset[tuple[str, int]] = frozenset(),
                  seed: int = 7, skill: dict[str, float] | None = None) -> Layout:
    """Write every input of the report under `root` for `params`; runs in `diverged` diverge at epoch 2.

    skill: model -> the accuracy its runs aim at (validation and test alike), for sweeps that look real.
    """
    layout = Layout(root)
    rng = np.random.default_rng(seed)
    save_npz(layout.raw_npz, {"images": rng.integers(0, 256, (RAW_ROWS, 784), dtype=np.uint8),
                              "labels": rng.integers(0, 10, RAW_ROWS).astype(np.uint8)})
    write_json(layout.source_json, {"source": "fixture", "file": "fixture.npz", "sha256": {"images": "ab" * 32,
               "labels": "cd" * 32}, "date": "2025-01-01T00:00:00+00:00"})
    write_json(layout.stats_json, {"normalize": "unit", "mean": 0.1307, "std": 0.3081, "split": "official",
                                   "sizes": {"train": params.data.n_train, "val": params.data.n_val,
                                             "test": params.data.n_test}})
    for model, run in params.models.items():
        for run_seed in params.seeds:
            is_diverged = (model, run_seed) in diverged
            aim = (skill or {}).get(model)
            train = train_record(model, run_seed, run.epochs, rng, 2 if is_diverged else None, params.data.n_val, aim)
            train["lr_curve"] = synthetic_lr_curve(params.mapping["models"][model], params.data.n_train)
            write_json(layout.train_report(model, run_seed), train)
            evaluation = eval_record(model, run_seed, rng, is_diverged, params.data.n_test, aim)
            evaluation["time_to_target"] = time_to_target(train["history"], params.evaluate.target_accuracy)
            write_json(layout.eval_report(model, run_seed), evaluation)
    return layout


def synthetic_lr_curve(entry: dict[str, Any], n_train: int) -> dict[str, list]:
    """The lr_curve training would record for this entry's schedule over n_train rows (every epoch completed)."""
    per_epoch = schedules.steps_per_epoch(n_train, entry["batch_size"])
    return lr_curve(schedules.learning_rates(entry["schedule"], entry["lr"], per_epoch, entry["epochs"]))


OPTIMIZER_PEAKS = {"sgd": (0.1, 0.975), "adam": (0.001, 0.978)}  # best lr and its accuracy, per optimizer


def sweep_models(n_lrs: int, bases: tuple[str, ...] = ("scratch_sgd", "scratch_adam")) -> tuple[dict, dict]:
    """A learning-rate sweep of `bases` (n_lrs members each, family = base): (models mapping, skill per model).

    Accuracy falls off quadratically in log10(lr) away from each optimizer's best lr, like a real sweep.
    """
    models, skill = {}, {}
    extra = {"torch_sgd": {**MODELS["scratch_sgd"], "impl": "torch", "device": "cpu"}}
    for base in bases:
        entry = {**MODELS, **extra}[base]
        best_lr, peak = OPTIMIZER_PEAKS[entry["optimizer"]]
        for lr in best_lr * np.logspace(-2, 1.5, n_lrs):
            name = f"{base}__lr_{lr:.3g}".replace(".", "p").replace("-", "m").replace("+", "")
            models[name] = {**entry, "lr": float(f"{lr:.3g}"), "family": base}
            skill[name] = max(0.2, peak - 0.04 * np.log10(lr / best_lr) ** 2)
    return models, skill
