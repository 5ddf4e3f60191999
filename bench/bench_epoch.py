"""Epoch time of scratch vs torch vs scikit-learn on the CPU, per optimizer, against the bare matrix products.

For every optimizer recipe (`RECIPES`: one entry per row), BLAS/torch thread count, training-set size and batch
size, the pipeline's own backends (set up as a `mnistbench train` job sets them up) train from the same initial
weights on the same batches. scikit-learn's `MLPClassifier` (784-128-10 ReLU, the same solver, learning rate and
batch size, alpha=0, float32) is the peer a user would pick instead: it uses its own initialization and its own
shuffling, so its accuracy is comparable and its bits are not. After the timed runs every implementation has
trained the same number of epochs; its test accuracy (data/prepared/test.npz) is reported beside its time. Each
measurement is the best of `--repeats` timed runs after one warm-up (the machine is shared: the best run is
the one least disturbed). A run is one epoch, or several epochs for the small set so that a run lasts about
as long as one epoch on 55,000 rows. The bare matrix products are the five GEMMs a step needs
(forward x@w1, h@w2; backward h.T@d, d@w2.T, x.T@dh) on contiguous batches with preallocated outputs.
Finally the peak memory (max RSS) of one real `mnistbench train` job on full MNIST is read from its record.

    python bench/bench_epoch.py                 # everything (about 5 minutes on 2 idle cores)
    python bench/bench_epoch.py --threads 1 --rows 1000 --batches 0 --no-memory

Writes bench/results/epoch.md and bench/results/epoch.json and prints the table.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from common import REPO, backend_for, matmul_epochs, recipe_run, test_rows, training_rows
from threadpoolctl import threadpool_info, threadpool_limits

from mnistbench.backends.fpenv import DENORMALS, denormals_flushed
from mnistbench.io import read_json, save_npz, write_json
from mnistbench.params import NetworkParams
from mnistbench.paths import Layout
from mnistbench.provenance import provenance
from mnistbench.training import epoch_batches, generators

RESULTS = REPO / "bench" / "results"
MODEL = NetworkParams(hidden=(128,), init="xavier_uniform", dtype="float32", activation="relu")
TARGET_VS_TORCH = {32: 0.6, 128: 0.6, 0: 0.8}
TARGET_VS_MATMUL = 1.3
IMPLEMENTATIONS = ("scratch", "torch", "sklearn")

# One row per optimizer (at every batch size): its keys as in a `models` entry of params.yaml. Adding an optimizer
# is one entry here (and one in SKLEARN_SOLVERS where scikit-learn has it).
RECIPES: dict[str, dict] = {
    "adam": {"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "sgd": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    "sgd_momentum": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
    "sgd_nesterov_wd": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    "adam_l2": {"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-4},
    "adamw": {"optimizer": "adamw", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2},
    "rmsprop": {"optimizer": "rmsprop", "lr": 1e-3, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False,
                "weight_decay": 0.0},
    "rmsprop_centered_momentum": {"optimizer": "rmsprop", "lr": 1e-4, "alpha": 0.99, "eps": 1e-8, "momentum": 0.9,
                                  "centered": True, "weight_decay": 0.0},
    "adagrad": {"optimizer": "adagrad", "lr": 1e-2, "eps": 1e-10, "weight_decay": 0.0,
                "initial_accumulator_value": 0.0},
}
# The default run: the whole grid (threads x rows x batches) for `adam`, and one row per other recipe at batch 128,
# 1 thread, 55,000 rows (the optimizer comparison of docs/optimizers.md).
GRID_RECIPES = ("adam",)
ROW_CELL = {"threads": 1, "rows": 55_000, "batch_size": 128}
# The MLPClassifier arguments of a recipe, for the optimizers scikit-learn has (its `adam` and `sgd` solvers).
SKLEARN_SOLVERS: dict[str, Callable[[dict], dict]] = {
    "adam": lambda recipe: {"solver": "adam", "beta_1": recipe["beta1"], "beta_2": recipe["beta2"],
                            "epsilon": recipe["eps"]},
    "sgd": lambda recipe: {"solver": "sgd", "momentum": recipe["momentum"], "nesterovs_momentum": recipe["nesterov"],
                           "learning_rate": "constant"},
}


def best_seconds(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Best wall time of each run over `repeats` rounds, after one untimed warm-up round.

    The runs alternate within a round, so that a burst of load from other jobs hits all of them alike.
    """
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for round_number in range(repeats + 1):
        for name, run_once in runs.items():
            start = time.perf_counter()
            run_once()
            if round_number:
                timings[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in timings.items()}


class Trainee:
    """One implementation under test: `run_once()` trains it for a run's epochs, `predict(images)` gives (n,) labels."""

    def __init__(self, run_once: Callable[[], None], predict: Callable[[np.ndarray], np.ndarray]) -> None:
        self.run_once, self.predict = run_once, predict


def backend_epochs(impl: str, recipe: dict, images: np.ndarray, labels: np.ndarray, batch_size: int, threads: int,
                   epochs: int) -> Trainee:
    """Runs of `epochs` epochs of the pipeline backend `impl` (same init and batch order for every impl)."""
    backend = backend_for(recipe_run(impl, batch_size, recipe), MODEL, images, labels, threads)
    _, batch_rng = generators(0)
    epoch_plan = [epoch_batches(len(labels), batch_size, batch_rng) for _ in range(epochs)]

    def run_once() -> None:
        for batches in epoch_plan:
            backend.train_epoch(batches)

    return Trainee(run_once, lambda test_images: np.argmax(backend.predict_logits(test_images), axis=1))


def sklearn_epochs(recipe: dict, images: np.ndarray, labels: np.ndarray, batch_size: int,
                   epochs: int) -> Trainee | None:
    """Runs of `epochs` epochs of scikit-learn's MLPClassifier at the same recipe (`partial_fit` is one epoch, its
    own shuffling); None where scikit-learn lacks the optimizer."""
    if recipe["optimizer"] not in SKLEARN_SOLVERS or recipe["weight_decay"]:  # its alpha is L2 on weights only
        return None
    from sklearn.neural_network import MLPClassifier

    classifier = MLPClassifier(hidden_layer_sizes=MODEL.hidden, activation="relu", alpha=0.0,
                               batch_size=batch_size or len(labels), learning_rate_init=recipe["lr"], shuffle=True,
                               random_state=0, **SKLEARN_SOLVERS[recipe["optimizer"]](recipe))
    classes = np.arange(10)

    def run_once() -> None:
        with denormals_flushed():  # as the pipeline's backends train (mnistbench.backends.fpenv): the same floats
            for _ in range(epochs):
                classifier.partial_fit(images, labels, classes=classes)

    return Trainee(run_once, classifier.predict)


def measure(recipe_name: str, threads: int, rows: int, batch_size: int, repeats: int) -> dict:
    recipe = RECIPES[recipe_name]
    images, labels, source = training_rows(rows)
    test_images, test_labels, test_source = test_rows()
    epochs = math.ceil(20_000 / rows) if rows < 20_000 else 1  # a run of the small set lasts like a big epoch
    with threadpool_limits(limits=threads):
        trainees = {impl: backend_epochs(impl, recipe, images, labels, batch_size, threads, epochs)
                    for impl in ("scratch", "torch")}
        trainees["sklearn"] = sklearn_epochs(recipe, images, labels, batch_size, epochs)
        trainees = {impl: trainee for impl, trainee in trainees.items() if trainee is not None}
        runs = {impl: trainee.run_once for impl, trainee in trainees.items()}
        runs["matmul"] = matmul_epochs(images, batch_size, epochs, MODEL.hidden[0])
        best = {name: seconds / epochs for name, seconds in best_seconds(runs, repeats).items()}
        accuracy = {impl: float(np.mean(trainee.predict(test_images) == test_labels))
                    for impl, trainee in trainees.items()}
    scratch, torch_cpu, matmul = best["scratch"], best["torch"], best["matmul"]
    result = {
        "optimizer": recipe_name, "recipe": recipe,
        "threads": threads, "rows": rows, "batch_size": batch_size, "data": source, "epochs_per_run": epochs,
        "steps_per_epoch": math.ceil(rows / (batch_size or rows)),
        "scratch_s": scratch, "torch_s": torch_cpu, "sklearn_s": best.get("sklearn"), "matmul_s": matmul,
        "scratch_vs_torch": scratch / torch_cpu, "scratch_vs_matmul": scratch / matmul,
        "epochs_trained": (repeats + 1) * epochs, "test_data": test_source,
        "test_accuracy": {impl: accuracy.get(impl) for impl in IMPLEMENTATIONS},
        "load_average_1min": os.getloadavg()[0],
    }
    result["meets_torch_target"] = result["scratch_vs_torch"] <= TARGET_VS_TORCH[batch_size]
    result["meets_matmul_target"] = result["scratch_vs_matmul"] <= TARGET_VS_MATMUL
    print(format_row(result), flush=True)
    return result


def peak_memory_mb(model: str, batch_size: int | None = None) -> dict:
    """Peak RSS of one `mnistbench train` job (1 epoch, on the CPU) run in a scratch directory on the prepared
    data (random data of the default sizes if there is none); batch_size overrides the params.yaml value."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepared = REPO / Layout().prepared_dir
        (work / "data").mkdir()
        if (prepared / "train.npz").is_file():
            (work / "data" / "prepared").symlink_to(prepared)
            source = "data/prepared"
        else:
            write_random_prepared(Layout(work))
            source = "random float32 of the default sizes"
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        run = {**params["models"][model], "epochs": 1}
        run["batch_size"] = run["batch_size"] if batch_size is None else batch_size
        if run["impl"] == "torch":
            run["device"] = "cpu"
        params["models"] = {model: run}
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        command = [sys.executable, "-m", "mnistbench", "--quiet", "train", "--model", model, "--seed", "0"]
        environment = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        subprocess.run(command, cwd=work, check=True, capture_output=True, env=environment)
        record = read_json(Layout(work).train_report(model, 0))
    return {"model": model, "peak_memory_mb": record["peak_memory_mb"], "n_train": record["n_train"],
            "batch_size": run["batch_size"], "data": source}


def write_random_prepared(layout: Layout) -> None:
    rng = np.random.default_rng(0)
    for split, rows in (("train", 55_000), ("val", 5_000)):
        save_npz(layout.prepared_split(split), {"images": rng.random((rows, 784), dtype=np.float32),
                                                "labels": rng.integers(0, 10, rows).astype(np.uint8)})
    write_json(layout.stats_json, {})


HEADER = ("| optimizer | threads | rows | batch | steps/epoch | scratch s/epoch | torch s/epoch | sklearn s/epoch "
          "| matmul s/epoch | scratch/torch (target) | scratch/matmul (target 1.3) "
          "| test accuracy scratch / torch / sklearn (epochs) | load |\n" + "|---" * 13 + "|")


def format_row(r: dict) -> str:
    batch = r["batch_size"] or "full"
    mark = {True: "ok", False: "MISSED"}
    sklearn = "n/a" if r["sklearn_s"] is None else f"{r['sklearn_s']:.4f}"
    accuracy = " / ".join("n/a" if r["test_accuracy"][impl] is None else f"{100 * r['test_accuracy'][impl]:.2f}%"
                          for impl in IMPLEMENTATIONS)
    return (f"| {r['optimizer']} | {r['threads']} | {r['rows']} | {batch} | {r['steps_per_epoch']} "
            f"| {r['scratch_s']:.4f} | {r['torch_s']:.4f} | {sklearn} | {r['matmul_s']:.4f} "
            f"| {r['scratch_vs_torch']:.2f} ({TARGET_VS_TORCH[r['batch_size']]}, {mark[r['meets_torch_target']]}) "
            f"| {r['scratch_vs_matmul']:.2f} ({mark[r['meets_matmul_target']]}) "
            f"| {accuracy} ({r['epochs_trained']}) | {r['load_average_1min']:.1f} |")


def thread_comparison(results: list[dict]) -> list[str]:
    """For each (rows, batch): the 2-thread time over the 1-thread time, per implementation."""
    by_key = {(r["optimizer"], r["threads"], r["rows"], r["batch_size"]): r for r in results}
    lines = ["| optimizer | rows | batch | scratch 2T/1T | torch 2T/1T | sklearn 2T/1T |", "|---|---|---|---|---|---|"]
    for (optimizer, threads, rows, batch), one in by_key.items():
        two = by_key.get((optimizer, 2, rows, batch))
        if threads == 1 and two:
            sklearn = f"{two['sklearn_s'] / one['sklearn_s']:.2f}" if one["sklearn_s"] and two["sklearn_s"] else "n/a"
            lines.append(f"| {optimizer} | {rows} | {batch or 'full'} | {two['scratch_s'] / one['scratch_s']:.2f} "
                         f"| {two['torch_s'] / one['torch_s']:.2f} | {sklearn} |")
    return lines


def markdown(results: list[dict], memory: list[dict], repeats: int, load: tuple[float, float]) -> str:
    lines = [
        "# Epoch time: scratch vs torch vs scikit-learn (CPU), and the bare matrix products",
        "",
        "scikit-learn's MLPClassifier: same data, 784-128-10 ReLU, same solver, learning rate and batch size, "
        "alpha=0, float32; its own initialization and shuffling. Subnormal floats, for all three: "
        f"{DENORMALS}. Test accuracy after the epochs trained by the warm-up and timed runs together.",
        "",
        f"Best of {repeats} timed runs after a warm-up, scratch, torch, sklearn and matmul runs alternating; "
        f"1-minute load average {load[0]:.2f} before, "
        f"{load[1]:.2f} after (2 cores, shared with other jobs: timings are noisy, the best run is reported).",
        "",
        HEADER,
        *[format_row(r) for r in results],
        "",
        "## 2 threads vs 1 thread (time ratio; below 1 means 2 threads are faster)",
        "",
        *thread_comparison(results),
    ]
    article = [r for r in results if r["rows"] == 1000 and r["batch_size"] == 0 and r["optimizer"] == "adam"]
    if article:
        lines += ["", "## The article's recipe (100 full-batch Adam epochs on 1,000 images)", ""]
        lines += [f"- {r['threads']} thread(s): scratch {100 * r['scratch_s']:.2f} s, torch {100 * r['torch_s']:.2f} s "
                  "(article: per-sample loops 72.94 s, PyTorch 1.90 s at batch 32)" for r in article]
    if memory:
        lines += ["", "## Peak memory of one `mnistbench train` job (1 epoch, max RSS of the process)", ""]
        lines += [f"- {m['model']}: {m['peak_memory_mb']:.0f} MiB ({m['n_train']} rows, batch {m['batch_size']}, "
                  f"{m['data']}; target < 1024 MiB)" for m in memory]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", nargs="+", default=list(GRID_RECIPES), choices=list(RECIPES),
                        help="recipes measured over the whole grid")
    parser.add_argument("--rows-of", nargs="*", default=[name for name in RECIPES if name not in GRID_RECIPES],
                        choices=list(RECIPES), help="recipes measured at batch 128, 1 thread, 55,000 rows only")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, nargs="+", default=[55_000, 1_000])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128, 0], help="0 = full batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory training jobs")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    # Memory first, while this process is small: Linux carries a parent's peak RSS into the ru_maxrss of the
    # child it starts (through fork and exec), so a child started later would report at least our peak.
    memory = [] if args.no_memory else [
        peak_memory_mb("scratch_adam"), peak_memory_mb("scratch_adam", batch_size=0), peak_memory_mb("torch_adam"),
        peak_memory_mb("torch_adam", batch_size=0)]
    print(HEADER)
    results = [measure(optimizer, threads, rows, batch, args.repeats) for optimizer in args.optimizers
               for threads in args.threads for rows in args.rows for batch in args.batches]
    results += [measure(optimizer, ROW_CELL["threads"], ROW_CELL["rows"], ROW_CELL["batch_size"], args.repeats)
                for optimizer in args.rows_of]
    text = markdown(results, memory, args.repeats, (load_before, os.getloadavg()[0]))
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "epoch.md").write_text(text)  # a rerun rewrites it whole; nothing reads it back
    write_json(RESULTS / "epoch.json", {"results": results, "peak_memory": memory, "repeats": args.repeats,
                                        "blas": threadpool_info(), "provenance": provenance()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
