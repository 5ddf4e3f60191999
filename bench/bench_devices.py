"""Epoch time of the Adam MLP: scratch (NumPy) vs torch on the CPU vs torch on CUDA (when present).

Every implementation trains from the same initial weights on the same batches (the shared training loop's
helpers); one warm-up epoch, then `--epochs` timed epochs, best and median reported. Torch synchronizes the
device before an epoch returns, so the CUDA times are real.

    python bench/bench_devices.py                      # 55,000 rows, batch 128 and 1024, 1 thread
    python bench/bench_devices.py --threads 2 --epochs 5

Writes bench/results/devices.json (with provenance) and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import adam_run, backend_for, training_rows
from threadpoolctl import threadpool_limits

from mnistbench.backends.torch import device_name, resolve_device
from mnistbench.io import write_json
from mnistbench.params import NetworkParams, RunParams
from mnistbench.provenance import provenance
from mnistbench.training import epoch_batches, generators


def time_epochs(run: RunParams, model: NetworkParams, images: np.ndarray, labels: np.ndarray, threads: int,
                epochs: int) -> tuple[list[float], str]:
    """Seconds of each timed epoch (after one warm-up epoch) and the device name."""
    backend = backend_for(run, model, images, labels, threads)
    _, batch_rng = generators(0)
    backend.train_epoch(epoch_batches(len(labels), run.batch_size, batch_rng))
    seconds = []
    for _ in range(epochs):
        batches = epoch_batches(len(labels), run.batch_size, batch_rng)
        start = time.perf_counter()
        backend.train_epoch(batches)
        seconds.append(time.perf_counter() - start)
    return seconds, backend.device_name


def contenders() -> list[tuple[str, str]]:
    """(impl, device) pairs to time: scratch, torch on the CPU, and torch on CUDA when torch sees a GPU."""
    pairs = [("scratch", "cpu"), ("torch", "cpu")]
    if torch.cuda.is_available():
        pairs.append(("torch", "cuda"))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=55_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per configuration")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("bench/results/devices.json"))
    args = parser.parse_args()
    images, labels, source = training_rows(args.rows)
    model = NetworkParams(hidden=args.hidden, init="xavier_uniform", dtype="float32")
    rows = []
    with threadpool_limits(limits=args.threads):
        for batch_size in args.batch_sizes:
            for impl, device in contenders():
                seconds, name = time_epochs(adam_run(impl, batch_size, device), model, images, labels,
                                            args.threads, args.epochs)
                rows.append({"impl": impl, "device": name, "batch_size": batch_size, "best_s": min(seconds),
                             "median_s": statistics.median(seconds), "epochs_s": seconds,
                             "images_per_s": len(labels) / min(seconds)})
                print(f"{impl:8s} {name:28s} batch {batch_size:5d}: best {min(seconds):.3f} s/epoch", flush=True)
    table = pd.DataFrame(rows)
    torch_cpu = table[(table["impl"] == "torch") & (table["device"] == "cpu")].set_index("batch_size")["best_s"]
    table["vs_torch_cpu"] = table["best_s"] / table["batch_size"].map(torch_cpu)
    print(table.drop(columns="epochs_s").to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    gpu = device_name(resolve_device("auto"))
    write_json(args.out, {"rows": len(labels), "data": source, "threads": args.threads, "hidden": args.hidden,
                          "results": table.to_dict(orient="records"),
                          "provenance": provenance(threads=args.threads, device=gpu)})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
