"""What each pipeline stage runs, for the orchestrators, and keeping DVC's lock in step with Snakemake.

`STAGE_CODE` lists the source files and folders whose edits must rerun a stage. dvc.yaml lists them as deps
(DVC hashes a folder's content); Snakemake lists the files they hold as rule inputs (`stage_code_files`), since
it watches files, not folders. A test checks that the two agree. Shared plumbing that cannot change
a result (cli, io, paths, errors, provenance) is left out on purpose, so that editing it reruns nothing.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from mnistbench.errors import MnistbenchError

log = logging.getLogger(__name__)

_PKG = "src/mnistbench"
_NETWORK = [
    f"{_PKG}/training.py",
    f"{_PKG}/scratch",
    f"{_PKG}/torchnet.py",
]
STAGE_CODE: dict[str, list[str]] = {
    "download": [f"{_PKG}/data/sources.py", f"{_PKG}/data/idx.py"],
    "prepare": [f"{_PKG}/data/prepare.py"],
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


def sync_dvc(root: Path = Path(".")) -> list[str]:
    """Record in dvc.lock every dvc.yaml stage whose outputs all exist (after a Snakemake run).

    Snakemake and DVC run the same commands on the same files, so after `snakemake` finishes DVC only needs
    the hashes: `dvc commit` stores them, and `dvc status` / `dvc repro` then see the pipeline up to date.
    Returns the stages committed. A checkout without DVC initialized is left alone.
    """
    if not (root / ".dvc").is_dir() or not (root / "dvc.yaml").is_file():
        log.info("no DVC project here: nothing to sync")
        return []
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        ready = [
            stage.addressing
            for stage in repo.index.stages
            if stage.outs and all(Path(root, str(out.def_path)).exists() for out in stage.outs)
        ]
    if not ready:
        return []
    result = subprocess.run(["dvc", "commit", "--force", "--quiet", *ready], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise MnistbenchError(f"dvc commit failed: {result.stderr.strip().splitlines()[-1:]}")
    log.info("dvc.lock updated for %d stages", len(ready))
    return ready
