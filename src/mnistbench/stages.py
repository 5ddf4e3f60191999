"""What each pipeline stage runs, for the orchestrators, and keeping Snakemake and DVC telling the same truth.

`STAGE_CODE` lists the source files and folders whose edits must rerun a stage. dvc.yaml lists them as deps
(DVC hashes a folder's content); Snakemake lists the files they hold as rule inputs (`stage_code_files`), since
it watches files, not folders. A test checks that the two agree. Shared plumbing that cannot change
a result (cli, io, paths, errors, provenance) is left out on purpose, so that editing it reruns nothing.

The two tools share one bookkeeping, dvc.lock, through documented interfaces (and one adapter, mnistbench.dvc_record):
- DVC records only what ran. A stage command that completes under Snakemake writes a journal entry (what it
  read and wrote, `record_completion`); the Snakefile's onsuccess/onerror hooks call `sync_dvc`, which runs
  `dvc commit --force` (in one pass: mnistbench.dvc_record) for exactly the stages whose entry still matches
  the files and params. Nothing else is committed.
- Snakemake reruns what DVC calls stale, and nothing DVC calls current (`Alignment`): before Snakemake plans,
  `dvc status --json` names the stale stages; the Snakefile's input functions give those a freshly dated input
  (DVC_STALE_MARKER, in DVC's scratch folder .dvc/tmp) and wrap every input of a current stage in `ancient()`;
  nothing in the workspace is written. Without DVC's verdict Snakemake plans nothing (`Alignment.refusal`), unless
  told to go by file dates alone (`--config without_dvc=true`).
- A damaged output is reported with the command that restores it (`restore_hint`), before Snakemake deletes
  anything (`Alignment.damaged`).
dvc.yaml and dvc.lock are read as YAML in their documented formats (`dvc_stages`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mnistbench.errors import DamagedFileError, MnistbenchError

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
                str(found.relative_to(root)) for found in path.rglob("*") if found.suffix in (".py", ".c", ".j2")
            )
        else:
            files.append(entry)
    return files




# --- dvc.yaml, read in its documented format ---------------------------------------------------------------------

IGNORED = ("__pycache__", ".snakemake_timestamp")  # as .dvcignore: never part of a stage's data
_ITEM = re.compile(r"\$\{item\.(\w+)\}")
_VARIABLE = re.compile(r"^\$\{([\w.]+)\}$")


@dataclass(frozen=True)
class DvcStage:
    """One stage of dvc.yaml, matrices expanded. name: as DVC prints it (`train@scratch_sgd-0`); deps and outs:
    paths (files or folders); params: dotted keys of params.yaml, "" for the whole file."""

    name: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    params: tuple[str, ...]
    uncached: tuple[str, ...] = ()  # outs with `cache: false`: DVC's cache never holds them


def dvc_stages(root: Path = Path("."), params: dict[str, Any] | None = None) -> dict[str, DvcStage]:
    """Every stage of root/dvc.yaml by name, `matrix` expanded over params.yaml's values as DVC does."""
    spec = _read_yaml(root / "dvc.yaml")
    params = _read_yaml(root / "params.yaml") if params is None else params
    stages: dict[str, DvcStage] = {}
    for base, definition in (spec.get("stages") or {}).items():
        matrix = definition.get("matrix")
        axes = {key: _matrix_values(value, params) for key, value in (matrix or {}).items()}
        for combination in itertools.product(*axes.values()):
            item = dict(zip(axes, combination, strict=True))
            name = f"{base}@{'-'.join(str(value) for value in combination)}" if matrix else base
            outs = [*definition.get("outs", []), *definition.get("metrics", []), *definition.get("plots", [])]
            stages[name] = DvcStage(
                name,
                deps=tuple(_fill(_entry_path(entry), item) for entry in definition.get("deps", [])),
                outs=tuple(_fill(_entry_path(entry), item) for entry in outs),
                params=tuple(_fill(key, item) for key in _param_keys(definition.get("params", []))),
                uncached=tuple(_fill(_entry_path(entry), item) for entry in outs
                               if isinstance(entry, dict) and (next(iter(entry.values())) or {}).get("cache") is False),
            )
    return stages


def _read_yaml(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def _matrix_values(value: Any, params: dict[str, Any]) -> list[Any]:
    variable = _VARIABLE.match(value) if isinstance(value, str) else None
    if variable:
        value = _lookup(params, variable.group(1))
    return list(value) if isinstance(value, dict | list) else [value]


def _entry_path(entry: str | dict[str, Any]) -> str:
    return entry if isinstance(entry, str) else next(iter(entry))


def _param_keys(entries: list[Any]) -> list[str]:
    keys: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            keys.append(entry)
        elif "params.yaml" in entry:
            keys += entry["params.yaml"] or [""]
    return keys


def _fill(text: str, item: dict[str, Any]) -> str:
    return _ITEM.sub(lambda match: str(item[match.group(1)]), text)


def _lookup(mapping: Any, dotted: str) -> Any:
    for key in dotted.split(".") if dotted else []:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _files(root: Path, path: str) -> list[str]:
    """path itself, or the files a folder holds (sorted, relative to root); [] when absent."""
    found = root / path
    if found.is_dir():
        return sorted(str(inner.relative_to(root)) for inner in found.rglob("*") if inner.is_file()
                      and not inner.name.endswith((".pyc", ".so", ".part")) and not set(inner.parts) & set(IGNORED))
    return [path] if found.is_file() else []


# --- DVC records only what ran: the journal and `sync_dvc` -------------------------------------------------------

JOURNAL_ENV = "MNISTBENCH_SNAKEMAKE_RUN"
JOURNAL_DIR = Path(".snakemake") / "mnistbench-journal"


def new_run_id() -> str:
    """An id for one Snakemake invocation: its jobs write their journal entries under it."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def stage_name(command: str, model: str | None = None, seed: int | None = None) -> str:
    """The DVC stage a CLI command is: `train --model M --seed N` is train@M-N."""
    return command if model is None else f"{command}@{model}-{seed}"


def _signature(paths: Iterable[str], root: Path) -> dict[str, list[int]]:
    """[size, mtime in ns] of every file: any rewrite changes it."""
    signature = {}
    for path in paths:
        for name in _files(root, path):
            stat = (root / name).stat()
            signature[name] = [stat.st_size, stat.st_mtime_ns]
    return signature


def _content(paths: Iterable[str], root: Path) -> dict[str, str]:
    """sha256 of every file (outputs: Snakemake touches them after the job, so their dates say nothing)."""
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest()
            for path in paths for name in _files(root, path)}


def _inputs(stage: DvcStage, root: Path, params: dict[str, Any]) -> dict[str, Any]:
    return {"params": {key: _lookup(params, key) for key in stage.params}, "deps": _signature(stage.deps, root)}


def begin_completion(name: str, root: Path = Path(".")) -> dict[str, Any] | None:
    """Before a stage command runs under Snakemake: what it is about to read. None outside Snakemake (DVC
    records its own runs) or for a command that is no stage of dvc.yaml."""
    run_id = os.environ.get(JOURNAL_ENV)
    if not run_id or not (root / "dvc.yaml").is_file():
        return None
    params = _read_yaml(root / "params.yaml")
    stage = dvc_stages(root, params).get(name)
    if stage is None:
        return None
    return {"run": run_id, "stage": name, "outs": list(stage.outs), "inputs": _inputs(stage, root, params)}


def record_completion(started: dict[str, Any] | None, root: Path = Path(".")) -> None:
    """After the stage command completed (its outputs written): its journal entry, for `sync_dvc`.

    The outputs are the ones dvc.yaml named when the command began: params.yaml edited meanwhile changes nothing.
    """
    if started is None:
        return
    from mnistbench.io import write_json

    entry = {**started, "outputs": _content(started["outs"], root)}
    write_json(root / JOURNAL_DIR / started["run"] / f"{started['stage']}.json", entry)


def sync_dvc(run_id: str | None, root: Path = Path(".")) -> list[str]:
    """After a Snakemake run (onsuccess and onerror): `dvc commit` exactly the stages whose command completed in
    that run and whose params, inputs and outputs are still the ones it ran with. Returns their names.

    run_id None: the entries of every run (after a run killed before its hooks could sync).
    A stage that did not run (`--until`, `--touch`, a failed job, ...) is never recorded: it stays stale for DVC.
    """
    folders = [root / JOURNAL_DIR / run_id] if run_id else sorted((root / JOURNAL_DIR).glob("*"))
    entries = [path for folder in folders if folder.is_dir() for path in sorted(folder.glob("*.json"))]
    if not entries or not _is_dvc_project(root):
        return []
    params = _read_yaml(root / "params.yaml")
    stages = dvc_stages(root, params)
    finished, changed = [], []
    for path in entries:
        entry = json.loads(path.read_text(encoding="utf-8"))
        stage = stages.get(entry["stage"])
        now = stage and json.loads(json.dumps(
            {"inputs": _inputs(stage, root, params), "outputs": _content(stage.outs, root)}))
        same = now == {"inputs": entry["inputs"], "outputs": entry["outputs"]}
        (finished if same else changed).append(entry["stage"])
    if changed:
        log.warning("not recorded in dvc.lock (changed since they ran): %s", ", ".join(sorted(changed)))
    if finished:
        commit_in_dvc(sorted(set(finished)), root)
        log.info("dvc.lock records the stages that ran: %s", ", ".join(sorted(set(finished))))
    for path in entries:
        path.unlink()
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return sorted(set(finished))


def commit_in_dvc(names: list[str], root: Path) -> None:
    """`dvc commit --force NAMES...` with one write of dvc.lock (mnistbench.dvc_record), in a process of its own.

    The CLI rewrites dvc.lock once per stage, which costs O(N^2) for N stages; the adapter writes the same file once.
    """
    command = [sys.executable, "-m", "mnistbench.dvc_record", *names]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise MnistbenchError(f"dvc commit --force of {len(names)} stage(s) failed: {last_line}")


# --- Snakemake reruns what DVC calls stale, and nothing DVC calls current ----------------------------------------

# Given as an input to every job; dated now whenever DVC calls a stage stale, so that Snakemake's own mtime rule
# reruns exactly those jobs. It lives in DVC's scratch folder, never in the workspace, and only its date matters.
DVC_STALE_MARKER = ".dvc/tmp/mnistbench-stale-marker"


@dataclass
class Alignment:
    """DVC's verdict, for the Snakefile's input functions.

    stale: the stages `dvc status` reports, with its reasons; downstream: the stages that read their outputs
    (rerun when those rerun, as with `dvc repro`); damaged: one line per changed output that cannot be read.
    available False (`--config without_dvc=true`): Snakemake's own mtime rule decides, params.yaml counted as an
    input of every job. refusal: the one line Snakemake stops with, before it plans a job, when DVC's verdict
    cannot be had (another orchestrator at work, no DVC project, `dvc status` failing).
    """

    available: bool
    stale: dict[str, Any] = field(default_factory=dict)
    downstream: set[str] = field(default_factory=set)
    writer: dict[str, str] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)
    refusal: str | None = None

    def inputs(self, stage: str, files: list[str], ancient: Callable[[str], Any]) -> list[Any]:
        """The inputs of a job of `stage`: as they are for a stale stage (plus the marker, dated now); for a
        current one `ancient` except what a stale stage writes; file times alone never rerun a current stage."""
        if not self.available:
            return [*files, "params.yaml"]
        if stage in self.stale:
            return [*files, DVC_STALE_MARKER]
        rerun = set(self.stale) | self.downstream
        return [file if self.writer.get(file) in rerun else ancient(file) for file in files] + [
            ancient(DVC_STALE_MARKER)]


# `dvc status --json`, with params.yaml parsed once rather than once per stage (mnistbench.dvc_record.status).
DVC_STATUS_JSON = [sys.executable, "-m", "mnistbench.dvc_record", "--status"]
WITHOUT_DVC = "without_dvc"  # `snakemake --config without_dvc=true`: file dates alone decide what reruns


def align_with_dvc(root: Path = Path("."), without_dvc: bool = False) -> Alignment:
    """Ask DVC (`dvc status --json`, read-only) which stages are stale; date the marker when any is.

    Without a verdict (no DVC project, `dvc status` failing) the Alignment carries the refusal, never a guess.
    """
    if without_dvc:
        return Alignment(available=False)
    if not _is_dvc_project(root):
        return Alignment(False, refusal=(
            "snakemake: error: no DVC project here (dvc.yaml, .dvc/), and Snakemake takes DVC's word for what is "
            f"current: run `dvc init`, or `snakemake --config {WITHOUT_DVC}=true` to let file dates decide"))
    result = subprocess.run(DVC_STATUS_JSON, cwd=root, capture_output=True, text=True)
    try:
        stale = json.loads(result.stdout or "{}") if result.returncode == 0 else None
    except json.JSONDecodeError:
        stale = None
    if not isinstance(stale, dict):
        return Alignment(False, refusal=_status_failure(result.stderr, root))
    stages = dvc_stages(root)
    writer = {out: stage.name for stage in stages.values() for out in stage.outs}
    alignment = Alignment(True, stale, _downstream(set(stale), stages), writer, _damaged(stale, root))
    marker = root / DVC_STALE_MARKER
    if stale or not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{time.time_ns()} {uuid.uuid4().hex}\n", encoding="utf-8")
    return alignment


def _status_failure(stderr: str, root: Path) -> str:
    """Why `dvc status` gave no verdict, in one line: an orchestrator at work, or DVC's own message."""
    from mnistbench.orchestrators import running_orchestrator

    running = running_orchestrator(root)
    if running:
        return running.refusal("snakemake")
    message = " ".join(line.strip() for line in stderr.strip().splitlines() if line.strip()) or "(no message)"
    return f"snakemake: error: dvc status failed, so what is current is unknown: {message}"


def _downstream(start: set[str], stages: dict[str, DvcStage]) -> set[str]:
    """Stages that read, directly or not, what the `start` stages write."""
    readers = {
        name: {other.name for other in stages.values()
               if any(dep == out or out.startswith(dep + "/") for dep in other.deps for out in stage.outs)}
        for name, stage in stages.items()
    }
    found: set[str] = set()
    todo = [name for name in start if name in readers]
    while todo:
        for reader in readers[todo.pop()] - found:
            found.add(reader)
            todo.append(reader)
    return found - start


def _damaged(stale: dict[str, Any], root: Path) -> list[str]:
    """One line for each output DVC calls modified that does not read back (bad CRC, truncated, not JSON)."""
    from mnistbench.io import check_readable

    problems = []
    for reasons in stale.values():
        for reason in reasons:
            changed = reason.get("changed outs", {}) if isinstance(reason, dict) else {}
            for path, state in changed.items():
                if state == "modified" and (root / path).is_file():
                    try:
                        check_readable(root / path)
                    except DamagedFileError as error:
                        problems.append(str(error.with_recovery(restore_hint(error.path, root))))
    return problems


# --- Damaged files: the command that restores one ----------------------------------------------------------------


def restore_hint(path: str | Path, root: Path = Path(".")) -> str:
    """How to get a good copy of `path` back: from DVC's cache when it holds the version dvc.lock records
    (`dvc checkout --force PATH`), else by rerunning the stage that writes it."""
    name = os.path.relpath(path, root)
    try:
        lock = _read_yaml(root / "dvc.lock") if (root / "dvc.lock").is_file() else {}
        md5 = next((out.get("md5") for stage in (lock.get("stages") or {}).values()
                    for out in stage.get("outs", []) if out.get("path") == name), None)
        writer = next((stage for stage in dvc_stages(root).values() if name in stage.outs), None)
    except (OSError, yaml.YAMLError, AttributeError):
        return "restore or recreate it"
    cached = writer is not None and name not in writer.uncached
    if cached and md5 and (root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).is_file():
        return f"restore it: dvc checkout --force {name}"
    if writer:
        return f"rerun the stage that writes it: dvc repro --force --single-item {writer.name}"
    return "restore or recreate it"


def _is_dvc_project(root: Path) -> bool:
    return (root / ".dvc").is_dir() and (root / "dvc.yaml").is_file()
