"""The one command line both Snakemake rules and DVC stages call: one subcommand per stage.

    mnistbench [--params PATH] [--log PATH] download | prepare | train | evaluate | report
    mnistbench sweep BASE --set KEY=V1,V2,... [--params PATH]     (and: sweep --clear BASE)

Each subcommand validates the params before any work, then calls one library function. Errors the user can
fix (bad params, a missing or damaged file) are printed as one line with exit status 2; `--debug` adds the
traceback. A stage that completes under Snakemake leaves a journal entry, so that `sync-dvc` records in dvc.lock
exactly the stages that ran (see mnistbench.stages).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from mnistbench import __version__
from mnistbench.errors import DamagedFileError, MnistbenchError
from mnistbench.params import Params, load_params
from mnistbench.paths import Layout
from mnistbench.quickexit import exit_quickly

log = logging.getLogger("mnistbench")


def _download(params: Params, args: argparse.Namespace, layout: Layout) -> None:
    from mnistbench.data.sources import run_download

    run_download(params, layout)


def _prepare(params: Params, args: argparse.Namespace, layout: Layout) -> None:
    from mnistbench.data.prepare import run_prepare

    run_prepare(params, layout)


def _configure_backend_process(params: Params, args: argparse.Namespace) -> None:
    """The process-wide settings (threads, deterministic kernels) of the backend this job runs: set here, once,
    so that importing or constructing a backend changes nothing global."""
    from mnistbench.backends import backend_class

    backend_class(params.run(args.model)).configure_process(args.threads)


def _train(params: Params, args: argparse.Namespace, layout: Layout) -> None:
    from mnistbench.training import run_train

    _configure_backend_process(params, args)
    run_train(params, args.model, args.seed, args.threads, layout)


def _evaluate(params: Params, args: argparse.Namespace, layout: Layout) -> None:
    from mnistbench.evaluation import run_evaluate

    _configure_backend_process(params, args)
    run_evaluate(params, args.model, args.seed, args.threads, layout)


def _report(params: Params, args: argparse.Namespace, layout: Layout) -> None:
    from mnistbench.report.render import run_report

    run_report(params, layout)


def _sync_dvc(params: Params, args: argparse.Namespace, layout: Layout) -> None:
    from mnistbench.stages import sync_dvc

    sync_dvc(args.run, layout.root)


def _sweep(params: Params, args: argparse.Namespace, layout: Layout) -> None:
    from mnistbench.sweep import run_clear, run_sweep

    if args.clear:
        removed = run_clear(Path(args.params), args.base)
        print(f"{args.params}: removed {len(removed)} entries of family {args.base}" if removed else
              f"{args.params}: no sweep of {args.base} to remove")
        return
    if not args.set:
        raise MnistbenchError("sweep: give at least one --set KEY=V1,V2,... (or --clear BASE)")
    added = run_sweep(Path(args.params), args.base, args.set)
    print(f"{args.params}: family {args.base} now has {len(added) + 1} members "
          f"({args.base} and {', '.join(added)})")


def _check(params: Params, args: argparse.Namespace, layout: Layout) -> None:
    print(f"{params.path}: valid ({len(params.models)} models x {len(params.seeds)} seeds)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnistbench",
        description="Reproducible MNIST benchmark: hand-written NumPy MLP vs PyTorch. "
        "Stages run in this order: download, prepare, train, evaluate, report.",
    )
    parser.add_argument("--version", action="version", version=f"mnistbench {__version__}")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--log", type=Path, help="log file (default: logs/<stage>.log)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback too")
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    def stage(name: str, handler: Callable, help_text: str) -> argparse.ArgumentParser:
        sub = stages.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    stage("download", _download, "fetch MNIST (data.source), verify checksums -> data/raw/")
    stage("prepare", _prepare, "split and normalize -> data/prepared/")
    for name, handler, help_text in (
        ("train", _train, "train models.MODEL for one seed -> data/models/, reports/train/"),
        ("evaluate", _evaluate, "evaluate a trained model on the test rows -> reports/eval/"),
    ):
        sub = stage(name, handler, help_text)
        sub.add_argument("--model", required=True, help="an entry of models in params.yaml")
        sub.add_argument("--seed", required=True, type=int, help="one of seeds in params.yaml")
        sub.add_argument("--threads", type=int, default=1, help="BLAS / torch threads for this job (default 1)")
    stage("report", _report, "aggregate results -> reports/metrics.json, reports/report.html")
    stage("check", _check, "validate the params file and exit")
    sweep = stage("sweep", _sweep, "write a family of models entries (BASE at several hyperparameter values) into "
                  "the params file; --clear removes them")
    sweep.add_argument("base", metavar="BASE", help="the models entry to sweep (it stays, as a member of its family)")
    sweep.add_argument("--set", action="append", metavar="KEY=V1,V2,...",
                       help="values of one numeric key of BASE (repeat for a grid), e.g. --set lr=1e-4,3e-4,1e-3, "
                       "--set weight_decay=0,1e-4, --set schedule.warmup_epochs=0,1")
    sweep.add_argument("--clear", action="store_true", help="remove the entries a sweep of BASE wrote")
    sweep.add_argument("--params", default=argparse.SUPPRESS, help="params file to edit (default: params.yaml)")
    sync = stage("sync-dvc", _sync_dvc, "after a Snakemake run: record in dvc.lock the stages that ran (dvc commit)")
    sync.add_argument("--run", help="the Snakemake run's id (default: every run not yet recorded)")
    return parser


def default_log_path(args: argparse.Namespace, layout: Layout) -> Path:
    if args.stage in ("train", "evaluate"):
        return layout.logs_dir / args.stage / args.model / f"seed{args.seed}.log"
    return layout.logs_dir / f"{args.stage}.log"


def configure_logging(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    file_handler.setFormatter(formatter)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [file_handler, console]
    root.setLevel(logging.INFO)


def _interrupt_on_sigterm() -> None:
    """Treat SIGTERM (a scheduler cancelling the job) like Ctrl-C, so temporary files are removed on the way out."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _begin_journal(args: argparse.Namespace) -> dict | None:
    """For a stage of dvc.yaml run with its params.yaml under Snakemake: what it reads, before it runs."""
    if args.stage not in ("download", "prepare", "train", "evaluate", "report") or args.params != "params.yaml":
        return None
    from mnistbench.stages import begin_completion, stage_name

    return begin_completion(stage_name(args.stage, getattr(args, "model", None), getattr(args, "seed", None)))


def _record_journal(started: dict | None) -> None:
    if started is not None:
        from mnistbench.stages import record_completion

        record_completion(started)


def _with_recovery(error: MnistbenchError, layout: Layout) -> MnistbenchError:
    """A damaged file's error ends with the command that restores it, which only the pipeline's records know."""
    if not isinstance(error, DamagedFileError) or error.recovery:
        return error
    from mnistbench.stages import restore_hint

    return error.with_recovery(restore_hint(error.path, layout.root))


def job_clock_path(log_path: Path) -> Path:
    """Where a stage leaves its job clock (mnistbench.provenance.job_timing), beside its log: logs/prepare.job.json."""
    return log_path.with_name(f"{log_path.stem}.job.json")


def _write_job_clock(args: argparse.Namespace, log_path: Path) -> None:
    """After a pipeline stage succeeded: its start and wall time, for the report's account of the pipeline's time."""
    if args.stage in ("download", "prepare", "train", "evaluate", "report"):
        from mnistbench.io import write_json
        from mnistbench.provenance import job_timing

        write_json(job_clock_path(log_path), job_timing())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _interrupt_on_sigterm()
    layout = Layout(Path("."))
    if getattr(args, "threads", 1) < 1:
        print(f"mnistbench: error: --threads = {args.threads}: must be >= 1", file=sys.stderr)
        return 2
    if args.quiet:
        import os

        os.environ["TQDM_DISABLE"] = "1"
    log_path = args.log or default_log_path(args, layout)
    configure_logging(log_path)
    start = time.perf_counter()
    try:
        params = load_params(args.params)
        started = _begin_journal(args)
        args.handler(params, args, layout)
        _record_journal(started)
        _write_job_clock(args, log_path)
    except MnistbenchError as error:
        log.error("mnistbench %s: error: %s", args.stage, _with_recovery(error, layout), exc_info=args.debug)
        return 2
    except KeyboardInterrupt:
        log.error("mnistbench %s: interrupted; nothing partial was kept", args.stage)
        return 130
    except Exception as error:
        if args.debug:
            raise
        log.error("mnistbench %s: unexpected error: %s: %s (--debug shows the traceback)", args.stage,
                  type(error).__name__, error)
        return 1
    log.info("mnistbench %s done in %.1f s", args.stage, time.perf_counter() - start)
    return 0


def run() -> NoReturn:
    """The `mnistbench` console script and `python -m mnistbench`: main(), then a quick exit (mnistbench.quickexit)."""
    exit_quickly(main())


if __name__ == "__main__":
    run()
