"""Where one training step's time goes, and what the optimizer's fast path buys (issue 16).

What it measures, all float32, 784-128-10 ReLU, one BLAS thread:
- optimizers: µs per step over the 101,770 parameters for every optimizer setting, three ways: the NumPy
  reference tensor by tensor (w1, b1, w2, b2), the same reference on the flat vector (what the backend did before),
  and the fused kernel (scratch/kernels.c, compiled) on the flat vector (what it does now);
- the fused Adam kernel by size: ns per parameter on 16,384 parameters (its four arrays, 256 KB, stay in L2), on
  the network's 101,770 and on 1,048,576 (16 MB, beyond L2): equal figures mean the kernel is bound by its
  arithmetic (a correctly rounded square root and division per parameter), not by memory;
- start-up: what the fused kernels cost a job: loading the extension (with the check of its source), building the
  optimizer and its first step, each in a fresh process;
- whole jobs: the default recipes scratch_sgd and scratch_adam (15 epochs on 55,000 rows) in a fresh process,
  seconds from the interpreter's start to the trained weights, with the fused steps and with the NumPy reference;
- the step at batch 32 and 128: each part alone (the GEMMs, the row gather, the hidden layer's bias add with ReLU
  and ReLU's backward with the bias gradient (one compiled pass each), the output layer's bias add and gradient, the
  loss, the optimizer) against the whole scratch step, the bare matrix products on contiguous rows, and the torch
  backend's step (fused Adam);
- the same parts inside real steps: the functions a scratch Adam step calls (the backend's row gather, the
  network's dense and hidden layers, its ReLU passes, the loss, the optimizer's step) wrapped in a CPU-time timer
  while the backend trains, so each part is timed with the caches the rest of the step leaves it.
The machine is shared (load average 4-10 on 2 cores while this was written), so every timing is CPU time, not
wall time: the calling thread's (time.thread_time: with one BLAS thread the GEMMs run in it) for the steps, the
child process's (getrusage) for start-up and jobs. Time spent waiting for a core is then not counted; what load
still costs (caches shared with other jobs) is cut by taking the best of N short rounds, the variants alternating
within a round. The load average is recorded with them.

    python bench/bench_step.py               # writes bench/results/step.json and step.md
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
from common import REPO, adam_run, backend_for, matmul_epochs, training_rows
from threadpoolctl import threadpool_limits

import mnistbench.scratch.network as network_module
from mnistbench.io import write_json
from mnistbench.params import NetworkParams
from mnistbench.provenance import compute_kernels, cpu_model
from mnistbench.scratch.fused import REBUILD, instruction_set, kernels
from mnistbench.scratch.initializers import xavier_uniform
from mnistbench.scratch.losses import softmax_cross_entropy_fused
from mnistbench.scratch.optim import SGD, Adagrad, Adam, AdamW, RMSprop
from mnistbench.training import epoch_batches, generators

RESULTS = REPO / "bench" / "results"
STEPS = 200  # steps per timed round of a whole step: short rounds, so that the best of them saw little load
PARTS = ("GEMMs (5)", "gather rows", "hidden bias add + ReLU (fused)", "ReLU backward + hidden bias gradient (fused)",
         "output bias add and gradient (fused)", "loss + dlogits", "optimizer (fused Adam)")
MODEL = NetworkParams(hidden=128, init="xavier_uniform", dtype="float32")
SHAPES = {"w1": (784, 128), "b1": (128,), "w2": (128, 10), "b2": (10,)}
OPTIMIZERS = {
    "sgd (lr 0.1, momentum 0: scratch_sgd)": lambda ps, f: SGD(ps, lr=0.1, fused=f),
    "sgd momentum 0.9": lambda ps, f: SGD(ps, lr=0.1, momentum=0.9, fused=f),
    "sgd nesterov, weight_decay": lambda ps, f: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
                                                    fused=f),
    "adam (scratch_adam)": lambda ps, f: Adam(ps, lr=1e-3, fused=f),
    "adam, weight_decay (L2)": lambda ps, f: Adam(ps, lr=1e-3, weight_decay=1e-4, fused=f),
    "adamw": lambda ps, f: AdamW(ps, lr=1e-3, weight_decay=1e-2, fused=f),
    "rmsprop": lambda ps, f: RMSprop(ps, lr=1e-3, fused=f),
    "rmsprop centered, momentum": lambda ps, f: RMSprop(ps, lr=1e-3, momentum=0.9, centered=True, fused=f),
    "adagrad": lambda ps, f: Adagrad(ps, lr=0.01, fused=f),
}


def best_microseconds(runs: dict[str, Callable[[], None]], calls: int, rounds: int) -> dict[str, float]:
    """Best µs per call of each run over `rounds` rounds of `calls` calls, after one warm-up round; runs alternate."""
    best = dict.fromkeys(runs, float("inf"))
    for round_number in range(rounds + 1):
        for name, run_once in runs.items():
            start = time.thread_time()
            for _ in range(calls):
                run_once()
            if round_number:
                best[name] = min(best[name], (time.thread_time() - start) / calls * 1e6)
    return best


def optimizer_steps(make: Callable, rounds: int) -> dict[str, float]:  # noqa: ANN001
    """µs per step of one optimizer setting: reference per tensor, reference on the flat vector, fused kernel."""
    rng = np.random.default_rng(0)
    per_tensor = {name: rng.normal(size=shape).astype(np.float32) for name, shape in SHAPES.items()}
    grads = {name: rng.normal(scale=1e-2, size=shape).astype(np.float32) for name, shape in SHAPES.items()}
    flat_grad = {"all": np.concatenate([grad.ravel() for grad in grads.values()])}
    flat = np.concatenate([value.ravel() for value in per_tensor.values()])
    reference_tensors, reference_flat = make(per_tensor, False), make({"all": flat.copy()}, False)
    fused_flat = make({"all": flat.copy()}, True)
    return best_microseconds({"reference per tensor": lambda: reference_tensors.step(grads),
                              "reference flat": lambda: reference_flat.step(flat_grad),
                              "fused flat": lambda: fused_flat.step(flat_grad)}, calls=50, rounds=rounds)


ADAM_SIZES = (16_384, 101_770, 1_048_576)


def adam_by_size(rounds: int) -> dict[int, float]:
    """ns per parameter of the fused Adam step (scratch_adam's settings) on one flat vector of each size."""
    rng = np.random.default_rng(0)
    runs = {}
    for size in ADAM_SIZES:
        optimizer = Adam({"all": rng.normal(size=size).astype(np.float32)}, lr=1e-3, fused=True)
        grad = {"all": rng.normal(scale=1e-2, size=size).astype(np.float32)}
        runs[size] = lambda optimizer=optimizer, grad=grad: optimizer.step(grad)
    calls = {size: max(5, 5_000_000 // size) for size in ADAM_SIZES}
    return {size: best_microseconds({size: run}, calls[size], rounds)[size] * 1e3 / size for size, run in runs.items()}


STARTUP = """
import time, numpy as np
from mnistbench.scratch.optim import Adam, SGD
start = time.process_time()
from mnistbench.scratch.fused import kernels
kernels()
loaded = time.process_time()
optimizer = {kind}({{"all": np.zeros(101770, np.float32)}}, lr=1e-3{options}, fused=True)
ready = time.process_time()
optimizer.step({{"all": np.ones(101770, np.float32)}})
print(loaded - start, ready - loaded, time.process_time() - ready)
"""
STARTUP_PARTS = ("kernels loaded", "optimizer built", "first step")


def child_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def startup_seconds(kind: str) -> dict[str, float]:
    """A fresh process, after its imports of NumPy and the optimizers: CPU seconds of loading the kernels, of
    building the optimizer and of its first step."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    script = STARTUP.format(kind=kind, options=", momentum=0.9" if kind == "SGD" else "")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return dict(zip(STARTUP_PARTS, map(float, out), strict=True))


def startup(repeats: int) -> dict[str, dict[str, float]]:
    """Best of `repeats` fresh processes per optimizer (Adam; SGD with momentum)."""
    results = {}
    for kind in ("Adam", "SGD"):
        runs = [startup_seconds(kind) for _ in range(repeats)]
        results[kind] = {key: min(run[key] for run in runs) for key in STARTUP_PARTS}
    return results


JOB = """
import time
start = time.process_time()
import numpy as np
from threadpoolctl import threadpool_limits
import mnistbench.backends.scratch as scratch
from mnistbench.params import load_params
from mnistbench.training import epoch_batches, generators, initial_weights
if not {fused}:
    scratch.kernels = lambda: None  # the NumPy reference
params = load_params("params.yaml")
run = params.models["{model}"]
rng = np.random.default_rng(0)
images, labels = rng.random((55000, 784), dtype=np.float32), rng.integers(0, 10, 55000)
data_made = time.process_time()
with threadpool_limits(limits=1):
    backend = scratch.ScratchBackend(run, initial_weights(0, params.network), images, labels, np.float32)
    batch_rng = generators(0)[1]
    for _ in range(run.epochs):
        backend.train_epoch(epoch_batches(len(labels), run.batch_size, batch_rng))
print(data_made - start)  # the parent subtracts these seconds of making the data
"""


def job_seconds(model: str, fused: bool) -> float:
    """CPU seconds of one default-recipe training job in a fresh process, less the making of its random data."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    before = child_cpu_seconds()
    out = subprocess.run([sys.executable, "-c", JOB.format(model=model, fused=fused)], env=env, cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return child_cpu_seconds() - before - float(out)


def jobs(repeats: int) -> dict[str, dict[str, float]]:
    """Best of `repeats` fresh processes per default recipe, fused and reference alternating."""
    results = {}
    for model in ("scratch_sgd", "scratch_adam"):
        runs = {"fused": [], "reference": []}
        for _ in range(repeats):
            for route in runs:
                runs[route].append(job_seconds(model, route == "fused"))
        results[model] = {route: min(values) for route, values in runs.items()}
    return results


def step_parts(images: np.ndarray, labels: np.ndarray, batch: int, rounds: int) -> dict[str, float]:
    """µs per step of each part of a scratch Adam step at `batch`, of the whole step, of the bare GEMMs and of torch."""
    rng = np.random.default_rng(0)
    # Xavier-uniform weights, of both signs as the network's: about half the hidden units are then <= 0, so ReLU's
    # passes see a mask as unpredictable as in training (all-positive weights had made it all ones, which hid a
    # branch mispredicted at every other unit).
    w1, b1 = xavier_uniform(rng, 784, 128, np.float32), np.zeros(128, np.float32)
    w2, b2 = xavier_uniform(rng, 128, 10, np.float32), np.zeros(10, np.float32)
    grad_w1, grad_w2, grad_b1, grad_b2 = np.empty_like(w1), np.empty_like(w2), np.empty_like(b1), np.empty_like(b2)
    x = np.ascontiguousarray(images[:batch])
    hidden, dhidden = np.empty((batch, 128), np.float32), np.empty((batch, 128), np.float32)
    logits = np.empty((batch, 10), np.float32, order="F")
    # Successive batches of one random permutation, as an epoch gathers them: each call reads rows not in cache.
    shuffled = rng.permutation(len(labels))
    batches = itertools.cycle([shuffled[start : start + batch] for start in range(0, len(labels) - batch + 1, batch)])
    gatherer = fused_adam_backend(images, labels, batch)  # its _gather, alone
    np.matmul(x, w1, out=hidden)
    np.matmul(hidden, w2, out=logits)
    batch_labels = labels[:batch]
    adam = Adam({"all": np.zeros(101770, np.float32)}, lr=1e-3, fused=True)
    adam_grad = {"all": np.full(101770, 1e-3, np.float32)}

    def gemms() -> None:
        np.matmul(x, w1, out=hidden)
        np.matmul(hidden, w2, out=logits)
        np.matmul(hidden.T, logits, out=grad_w2)
        np.matmul(logits, w2.T, out=dhidden)
        np.matmul(x.T, dhidden, out=grad_w1)

    def output_bias() -> None:
        kernels().bias_add(logits, b2)
        kernels().bias_grad(logits, grad_b2)

    loss_work = (np.empty(batch, np.float32), np.empty(batch, np.float32), np.empty(batch, np.float64))
    parts = {
        "GEMMs (5)": gemms,
        "gather rows": lambda: gatherer._gather(next(batches)),
        "hidden bias add + ReLU (fused)": lambda: kernels().bias_relu(hidden, b1),
        "ReLU backward + hidden bias gradient (fused)": lambda: kernels().relu_backward_bias_grad(dhidden, hidden,
                                                                                                  grad_b1),
        "output bias add and gradient (fused)": output_bias,
        "loss + dlogits": lambda: softmax_cross_entropy_fused(logits, batch_labels, kernels(), loss_work),
        "optimizer (fused Adam)": lambda: adam.step(adam_grad),
    }
    assert tuple(parts) == PARTS
    per_part = best_microseconds(parts, calls=100, rounds=rounds)
    per_part.update(whole_steps(images, labels, batch, rounds))
    return per_part


def fused_adam_backend(images: np.ndarray, labels: np.ndarray, batch: int) -> object:
    """A scratch Adam backend on its fused path (the kernels must be built): the step these tables break down."""
    backend = backend_for(adam_run("scratch", batch), MODEL, images, labels, threads=1)
    if backend.optimizer.kernels is None:
        raise SystemExit(f"the fused optimizer kernels are not built: {REBUILD}")
    return backend


def whole_steps(images: np.ndarray, labels: np.ndarray, batch: int, rounds: int) -> dict[str, float]:
    """µs per step of the scratch backend, the torch backend and the bare GEMMs over the epoch's first STEPS steps."""
    plan = epoch_batches(len(labels), batch, generators(0)[1])[:STEPS]
    scratch = fused_adam_backend(images, labels, batch)
    without_optimizer = fused_adam_backend(images, labels, batch)
    torch = backend_for(adam_run("torch", batch), MODEL, images, labels, threads=1)
    without_optimizer.optimizer.step = lambda grads: None  # the step's glue and cache misses, less the optimizer
    runs = {"scratch step": lambda: scratch.train_epoch(plan),
            "scratch step without its optimizer": lambda: without_optimizer.train_epoch(plan),
            "torch step (fused Adam)": lambda: torch.train_epoch(plan),
            "bare GEMMs on contiguous rows": matmul_epochs(images[: STEPS * batch], batch, 1)}
    return {name: value / STEPS for name, value in best_microseconds(runs, calls=1, rounds=rounds).items()}


# The parts of a step as the scratch backend calls them, timed inside its steps (parts_inside_steps), and the parts
# timed alone (PARTS) that do the same work, where there are such.
DENSE = "dense layers (GEMMs, the output bias add and gradient)"
INSIDE = {"gather rows": ("gather rows",), DENSE: ("GEMMs (5)", "output bias add and gradient (fused)"),
          "hidden bias add + ReLU (fused)": ("hidden bias add + ReLU (fused)",),
          "ReLU backward + hidden bias gradient (fused)": ("ReLU backward + hidden bias gradient (fused)",),
          "loss + dlogits": ("loss + dlogits",), "optimizer (fused Adam)": ("optimizer (fused Adam)",)}
# The hidden layers' passes run inside hidden_forward / hidden_backward, timed as the dense part: their time is taken
# out of it.
NESTED = {DENSE: ("hidden bias add + ReLU (fused)", "ReLU backward + hidden bias gradient (fused)")}


def parts_inside_steps(images: np.ndarray, labels: np.ndarray, batch: int, rounds: int) -> dict[str, float]:
    """µs per step of each part of the scratch backend's fused Adam step, timed inside its epoch's first STEPS steps.

    Each part is the best of `rounds` rounds, and so is "instrumented step" (the step with the timers on); "glue" is
    the instrumented step less its parts: the Python between them.
    """
    plan = epoch_batches(len(labels), batch, generators(0)[1])[:STEPS]
    backend = fused_adam_backend(images, labels, batch)
    totals = dict.fromkeys(INSIDE, 0)
    best = dict.fromkeys([*INSIDE, "instrumented step"], float("inf"))
    with _timers_on(backend, totals):
        for round_number in range(rounds + 1):
            totals.update(dict.fromkeys(totals, 0))
            start = time.thread_time_ns()
            backend.train_epoch(plan)
            elapsed = {"instrumented step": time.thread_time_ns() - start, **totals}
            for outer, inner in NESTED.items():
                elapsed[outer] -= sum(totals[part] for part in inner)
            if round_number:
                best = {name: min(best[name], elapsed[name] / STEPS / 1e3) for name in best}
    best["glue"] = best["instrumented step"] - sum(best[name] for name in INSIDE)
    return best


@contextmanager
def _timers_on(backend: object, totals: dict[str, int]) -> Iterator[None]:
    """Wrap the functions a scratch step calls, adding each call's CPU nanoseconds to totals[part]: the backend's own
    (kept: the backend is this benchmark's) and the network module's layer and loss functions (restored after)."""
    network = backend.network
    relu_forward, relu_backward = INSIDE["hidden bias add + ReLU (fused)"][0], NESTED[DENSE][1]
    for owner, attribute, part in ((backend, "_gather", "gather rows"), (network, "bias_activation", relu_forward),
                                   (network, "activation_bias_backward", relu_backward),
                                   (backend.optimizer, "step", "optimizer (fused Adam)")):
        setattr(owner, attribute, _timed(getattr(owner, attribute), part, totals))
    module_parts = {"dense_forward": DENSE, "dense_backward": DENSE, "hidden_forward": DENSE, "hidden_backward": DENSE,
                    "softmax_cross_entropy": "loss + dlogits", "softmax_cross_entropy_fused": "loss + dlogits"}
    originals = {name: getattr(network_module, name) for name in module_parts}
    for name, part in module_parts.items():
        setattr(network_module, name, _timed(originals[name], part, totals))
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(network_module, name, function)


def _timed(function: Callable, part: str, totals: dict[str, int]) -> Callable:
    def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start = time.thread_time_ns()
        result = function(*args, **kwargs)
        totals[part] += time.thread_time_ns() - start
        return result

    return timed


def inside_table(parts: dict[str, float], inside: dict[str, float]) -> list[str]:
    """Markdown rows: each part inside the step against the same work timed alone."""
    lines = ["| part | µs inside the step | µs alone | inside / alone |", "|---|---|---|---|"]
    for name, alone_parts in INSIDE.items():
        alone = sum(parts[part] for part in alone_parts)
        lines.append(f"| {name} | {inside[name]:.1f} | {alone:.1f} | {inside[name] / alone:.2f} |")
    lines.append(f"| glue: the instrumented step less its parts (Python between them) | {inside['glue']:.1f} | | |")
    lines.append(f"| the instrumented step, against the step without timers (their difference is the timers' cost, "
                 f"within the noise) | {inside['instrumented step']:.1f} | {parts['scratch step']:.1f} | |")
    return lines


def markdown(results: dict) -> str:
    lines = [f"# Step benchmark ({results['date']}, {results['cpu']}, 1 BLAS thread, float32)", "",
             f"Load average before / after: {results['load_before']} / {results['load_after']}. "
             f"NumPy {np.__version__}, fused kernels: {results['kernels_isa']}, BLAS {results['blas']}.", "",
             "## Optimizer step, CPU µs per step over 101,770 parameters (best of rounds of 50 steps)", "",
             "| optimizer | reference per tensor | reference flat | fused flat (C) | flat / fused |",
             "|---|---|---|---|---|"]
    for name, row in results["optimizers"].items():
        lines.append(f"| {name} | {row['reference per tensor']:.1f} | {row['reference flat']:.1f} | "
                     f"{row['fused flat']:.1f} | {row['reference flat'] / row['fused flat']:.2f} |")
    lines += ["", "## Fused Adam by size, CPU ns per parameter (the kernel alone, best of rounds)", "",
              "| parameters | " + " | ".join(f"{int(size):,}" for size in results["adam_by_size"]) + " |",
              "|---|" + "---|" * len(results["adam_by_size"]),
              "| ns per parameter | " + " | ".join(f"{ns:.3f}" for ns in results["adam_by_size"].values()) + " |"]
    lines += ["", "## The fused kernels in a fresh process, CPU seconds (best of runs)", "",
              "| optimizer | " + " | ".join(STARTUP_PARTS) + " |", "|---|---|---|---|"]
    for name, row in results["startup"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[part]:.4f}" for part in STARTUP_PARTS) + " |")
    lines += ["", "## Whole default jobs (15 epochs, 55,000 random rows, 1 thread), CPU seconds of a fresh process", "",
              "| model | NumPy reference | fused | reference / fused |", "|---|---|---|---|"]
    for model, row in results["jobs"].items():
        lines.append(f"| {model} | {row['reference']:.2f} | {row['fused']:.2f} | "
                     f"{row['reference'] / row['fused']:.2f} |")
    for batch, parts in results["steps"].items():
        lines += ["", f"## Step at batch {batch}, CPU µs per step", "", "| part | µs | / bare GEMMs |", "|---|---|---|"]
        floor = parts["bare GEMMs on contiguous rows"]
        lines += [f"| {name} | {value:.1f} | {value / floor:.2f} |" for name, value in parts.items()]
        named = sum(value for name, value in parts.items() if name in PARTS)
        lines.append(f"| rest of the step: whole step less the parts (Python between them, cache misses) | "
                     f"{parts['scratch step'] - named:.1f} | |")
        lines.append(f"| the optimizer inside the step: whole step less the step without it | "
                     f"{parts['scratch step'] - parts['scratch step without its optimizer']:.1f} | |")
        versus_torch = parts["scratch step"] / parts["torch step (fused Adam)"]
        lines.append(f"| **scratch step / torch step (fused Adam)** | {versus_torch:.2f} | |")
        if batch in results.get("inside", {}):
            lines += ["", f"## Inside the step at batch {batch}: the same parts timed where they run, CPU µs per step",
                      "", *inside_table(parts, results["inside"][batch])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per measurement (the best is kept)")
    parser.add_argument("--startup-repeats", type=int, default=3, help="fresh processes per start-up case")
    parser.add_argument("--job-repeats", type=int, default=2, help="fresh processes per whole-job case (0: skip)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    images, labels, source = training_rows(55000)
    with threadpool_limits(limits=1):
        optimizers = {name: optimizer_steps(make, args.rounds) for name, make in OPTIMIZERS.items()}
        by_size = adam_by_size(args.rounds)
        steps = {batch: step_parts(images, labels, batch, args.rounds) for batch in (32, 128)}
        inside = {batch: parts_inside_steps(images, labels, batch, args.rounds) for batch in (32, 128)}
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "data": source,
        "kernels_isa": instruction_set(),
        "blas": ", ".join(f"{pool['internal_api']} {pool['version']} ({pool['architecture']})"
                          for pool in compute_kernels()["blas"]),
        "kernels": compute_kernels(), "load_before": [round(v, 2) for v in load_before],
        "optimizers": optimizers, "adam_by_size": by_size, "startup": startup(args.startup_repeats), "steps": steps,
        "inside": inside,
        "jobs": jobs(args.job_repeats) if args.job_repeats else {},
    }
    results["load_after"] = [round(v, 2) for v in os.getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "step.json", results)
    (RESULTS / "step.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
