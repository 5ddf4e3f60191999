"""What each pipeline stage runs, for the orchestrators, and keeping DVC's lock in step with Snakemake.

`STAGE_CODE` lists the source files and folders whose edits must rerun a stage. dvc.yaml lists them as deps
(DVC hashes a folder's content); Snakemake lists the files they hold as rule inputs (`stage_code_files`), since
it watches files, not folders. A test checks that the two agree. Shared plumbing that cannot change
a result (cli, io, paths, errors, provenance) is left out on purpose, so that editing it reruns nothing.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from base64 import urlsafe_b64encode
from pathlib import Path

from mnistbench.errors import MnistbenchError

log = logging.getLogger(__name__)

_PKG = "src/mnistbench"
_NETWORK = [
    f"{_PKG}/training.py",
    f"{_PKG}/backends",
    f"{_PKG}/scratch",
]
_DATA = f"{_PKG}/data"
STAGE_CODE: dict[str, list[str]] = {
    "download": [
        f"{_DATA}/{module}.py"
        for module in ("sources", "idx", "wheel", "download", "safe_pickle", "checksums", "raw")
    ],
    "prepare": [f"{_DATA}/prepare.py", f"{_DATA}/raw.py", f"{_DATA}/checksums.py"],
    "train": _NETWORK,
    "evaluate": [*_NETWORK, f"{_PKG}/evaluation.py"],
    "report": [f"{_PKG}/report"],
}


def stage_code_files(stage: str, root: Path = Path(".")) -> list[str]:
    """STAGE_CODE[stage] with each folder replaced by the source files it holds (sorted, relative to root)."""
    files: list[str] = []
    for entry in STAGE_CODE[stage]:
        path = root / entry
        if path.is_dir():
            files += sorted(
                str(found.relative_to(root)) for found in path.rglob("*") if found.suffix in (".py", ".j2")
            )
        else:
            files.append(entry)
    return files


def sync_dvc(targets: list[str], root: Path = Path(".")) -> None:
    """After a successful Snakemake run: record the finished stages in dvc.lock (`dvc commit --with-deps`).

    Snakemake and DVC run the same commands on the same files, so DVC only needs the hashes. Only the
    targets Snakemake built, and what they depend on, are recorded: they are up to date; other stages may not be.
    targets: Snakemake's targets (rule names or output files); none means the default target, the report.
    """
    if not _is_dvc_project(root):
        log.info("no DVC project here: nothing to sync")
        return
    stages = _dvc_stages_for(targets, root)
    command = ["dvc", "commit", "--force", "--quiet", "--with-deps", *stages]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise MnistbenchError(f"{' '.join(command)} failed: {last_line}")
    log.info("dvc.lock records %s and what it depends on", ", ".join(stages))


def _dvc_stages_for(targets: list[str], root: Path) -> list[str]:
    """DVC stage names for Snakemake targets: rule names stay (dvc.yaml uses the same names), an output file
    becomes the stage that writes it (`dvc commit --with-deps` follows stage names, not file paths)."""
    wanted = [target for target in targets if target != "all"] or ["report"]
    files = [target for target in wanted if "/" in target or "." in target]
    if not files:
        return wanted
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        writer = {str(out.def_path): stage.name for stage in repo.index.stages for out in stage.outs}
    return [writer.get(target, target) if target in files else target for target in wanted]


def align_snakemake_with_dvc(root: Path = Path(".")) -> dict[str, list[str]]:
    """Before Snakemake builds its DAG: make its idea of what is stale agree with DVC's lock file.

    For every DVC stage whose outputs are the very files dvc.lock records (DVC made them, restored them, or
    `sync_dvc` recorded them):
    - up to date for DVC: Snakemake's own records of those outputs are dropped (they may predate a
      `dvc repro`) and file times are put in pipeline order (`dvc checkout` / `dvc pull` give new times);
    - changed for DVC (params, code or inputs): the outputs are dated before their inputs, so that Snakemake
      reruns exactly those jobs.
    Outputs DVC has not recorded (made by Snakemake since) are left to Snakemake's own rerun triggers.
    Returns the stage names in each group.
    """
    groups: dict[str, list[str]] = {"up_to_date": [], "stale": [], "left_alone": []}
    if not _is_dvc_project(root) or not (root / "dvc.lock").is_file():
        return groups
    import networkx
    from dvc.repo import Repo

    with Repo(str(root)) as repo, repo.lock:
        upstream_first = list(reversed(list(networkx.topological_sort(repo.index.graph))))
        for stage in upstream_first:
            changes = stage.status().get(stage.addressing, [])
            outputs = [Path(root, str(out.def_path)) for out in stage.outs]
            recorded = all(out.hash_info for out in stage.outs) and all(path.exists() for path in outputs)
            if not recorded or any(isinstance(c, dict) and "changed outs" in c for c in changes):
                groups["left_alone"].append(stage.addressing)
            elif changes:
                _date_before_inputs(outputs)
                groups["stale"].append(stage.addressing)
            else:
                inputs = [Path(root, str(dep.def_path)) for dep in stage.deps if dep.def_path and "://" not in
                          str(dep.def_path) and Path(root, str(dep.def_path)).exists()]
                _order_after_inputs(outputs, inputs)
                _forget_snakemake_records(root, [str(out.def_path) for out in stage.outs])
                groups["up_to_date"].append(stage.addressing)
    log.info("aligned with dvc.lock: %d up to date, %d stale, %d left to Snakemake",
             *(len(names) for names in groups.values()))
    return groups


def _is_dvc_project(root: Path) -> bool:
    return (root / ".dvc").is_dir() and (root / "dvc.yaml").is_file()


def _files_under(path: Path) -> list[Path]:
    return [found for found in path.rglob("*") if found.is_file()] if path.is_dir() else [path]


def _newest_time(paths: list[Path]) -> float:
    return max((found.stat().st_mtime for path in paths for found in _files_under(path)), default=0.0)


def _order_after_inputs(outputs: list[Path], inputs: list[Path]) -> None:
    """Date outputs just after their newest input (never in the future, which Snakemake calls clock skew)."""
    newest_input = _newest_time(inputs)
    stamp = min(newest_input + 0.001, time.time())
    for output in outputs:
        for found in _files_under(output):
            if found.stat().st_mtime <= newest_input:
                os.utime(found, (stamp, stamp))


def _date_before_inputs(outputs: list[Path]) -> None:
    # One second after the epoch: Snakemake reads a modification time of 0 as "unknown", not as "old".
    for output in outputs:
        for found in _files_under(output):
            os.utime(found, (1, 1))


def _forget_snakemake_records(root: Path, outputs: list[str]) -> None:
    """Delete Snakemake's metadata for these outputs (the layout of snakemake.persistence.file)."""
    metadata = root / ".snakemake" / "metadata"
    if not metadata.is_dir():
        return
    chunk = os.pathconf(metadata, "PC_NAME_MAX") - 1
    for output in outputs:
        encoded = urlsafe_b64encode(output.encode()).decode()
        parts = [encoded[i : i + chunk] for i in range(0, len(encoded), chunk)]
        (metadata.joinpath(*["@" + part for part in parts[:-1]], parts[-1])).unlink(missing_ok=True)
