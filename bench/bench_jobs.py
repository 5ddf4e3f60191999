"""Where a job's time goes outside its work: wall time of real `mnistbench train` / `evaluate` jobs against the work
they did in process, for scratch and torch, next to the cost of `import torch` alone.

Each job runs as the pipeline runs it (a fresh interpreter, `python -m mnistbench ... --threads 1`) in a working
folder holding prepared data and a params.yaml (by default this repository's params, torch on the CPU, the default
epochs, so that each job is what the pipeline runs).
Work is the training loop (`wall_seconds` of the training record) or the inference passes of an evaluation
(`throughput_repeats` + 2 passes at the best pass's time). Overhead = wall - work. Each figure is the best of
`--repeats` runs (the machine is shared: the best run is the least disturbed).

    python bench/bench_jobs.py --workdir DIR            # DIR: data/prepared/ and params.yaml (see --setup)
    python bench/bench_jobs.py --workdir DIR --setup    # first copy this repository's params into DIR

Writes bench/results/jobs.md and bench/results/jobs.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import REPO

from mnistbench.io import write_json
from mnistbench.provenance import provenance

RESULTS = REPO / "bench" / "results"
JOBS = (("scratch_adam", "train"), ("scratch_adam", "evaluate"), ("torch_adam", "train"), ("torch_adam", "evaluate"))
# Runs one CLI command, prints how many modules it imported and which heavy packages among them, then exits as the
# console script does (mnistbench.cli.run).
WRAPPER = """
import json, sys
from mnistbench.cli import main
from mnistbench.quickexit import exit_quickly
code = main(sys.argv[1:])
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"torch", "scipy", "sklearn", "pandas", "matplotlib"})
print(json.dumps({"code": code, "modules": len(sys.modules), "heavy": heavy}))
exit_quickly(code)
"""


def setup(workdir: Path) -> None:
    """Copy this repository's params.yaml into workdir, with torch on the CPU."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for run in params["models"].values():
        if run["impl"] == "torch":
            run["device"] = "cpu"
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def timed(command: list[str], workdir: Path, src: Path) -> tuple[float, dict]:
    environment = {**os.environ, "PYTHONPATH": str(src), "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, env=environment, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(result.stdout.strip().splitlines()[-1] or "{}")


def job_work(workdir: Path, model: str, stage: str) -> float:
    """Seconds of the job's own work, from the record it wrote."""
    if stage == "train":
        return json.loads((workdir / f"reports/train/{model}/seed0.json").read_text())["wall_seconds"]
    inference = json.loads((workdir / f"reports/eval/{model}/seed0.json").read_text())["inference"]
    return (inference["repeats"] + 2) * inference["best_seconds"]


def measure(workdir: Path, src: Path, model: str, stage: str, repeats: int) -> dict:
    command = [sys.executable, "-c", WRAPPER, "--quiet", stage, "--model", model, "--seed", "0", "--threads", "1"]
    best = None
    for _ in range(repeats):
        wall, imported = timed(command, workdir, src)
        work = job_work(workdir, model, stage)
        if best is None or wall - work < best["overhead_s"]:
            best = {"model": model, "stage": stage, "wall_s": wall, "work_s": work, "overhead_s": wall - work,
                    "modules": imported["modules"], "heavy_imports": imported["heavy"]}
    best["load_average_1min"] = os.getloadavg()[0]
    return best


def import_torch_seconds(repeats: int) -> float:
    # Ended as the jobs end (mnistbench.quickexit): the import alone, without the 0.3 s of torch's teardown.
    command = [sys.executable, "-c", "import os, torch; print('{}', flush=True); os._exit(0)"]
    return min(timed(command, REPO, REPO / "src")[0] for _ in range(repeats))


def markdown(results: list[dict], torch_import: float, src: Path) -> str:
    lines = ["# Job overhead: wall time of one job minus its in-process work (best of the runs)", "",
             f"Code: {src}. `import torch` alone (a process that imports it and exits at once): "
             f"{torch_import:.2f} s.", "",
             "| job | wall s | work s | overhead s | overhead beyond import torch | modules | heavy imports | load |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        beyond = r["overhead_s"] - torch_import if r["model"].startswith("torch") else r["overhead_s"]
        lines.append(f"| {r['stage']} {r['model']} | {r['wall_s']:.2f} | {r['work_s']:.2f} | {r['overhead_s']:.2f} "
                     f"| {beyond:.2f} | {r['modules']} | {', '.join(r['heavy_imports']) or '-'} "
                     f"| {r['load_average_1min']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="folder with data/prepared/ and params.yaml")
    parser.add_argument("--setup", action="store_true", help="write the params.yaml into --workdir first")
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the mnistbench source to time (PYTHONPATH)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="jobs", help="results name: bench/results/NAME.md and .json")
    args = parser.parse_args(argv)
    if args.setup:
        setup(args.workdir)
    results = [measure(args.workdir, args.src, model, stage, args.repeats) for model, stage in JOBS]
    torch_import = import_torch_seconds(args.repeats)
    text = markdown(results, torch_import, args.src)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.output}.md").write_text(text)
    write_json(RESULTS / f"{args.output}.json", {"results": results, "import_torch_s": torch_import,
                                                 "src": str(args.src), "provenance": provenance()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
