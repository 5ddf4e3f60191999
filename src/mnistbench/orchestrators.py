"""One orchestrator at a time in a repository: Snakemake and DVC each see the other's run, through DVC's own locks.

DVC 3 guards a repository with two locks in `.dvc/tmp` (docs/orchestrators.md gives the details):
- `lock`: an flock (zc.lockfile) holding the PID of the DVC command that works here; `dvc repro` and `dvc exp run`
  hold it from their start, letting go only while a stage command runs. The kernel frees it when its holder dies.
- `rwlock`: JSON, `{"read": {path: [{"pid", "cmd"}]}, "write": {path: {"pid", "cmd"}}}`: the stages at work, their
  deps read and outs written; `exps/rwlock` is the same for experiments ("workspace" while one is put in the
  workspace). Every DVC stage step checks it, and removes an entry whose PID is gone, with a warning.

A Snakemake run claims the repository (`claim_workspace`): with DVC's lock held, so that no DVC command can be
between two steps, it checks that no live DVC command has an rwlock entry, then adds a reader entry for the whole
repository to `rwlock` and for "workspace" to `exps/rwlock`, naming itself. `dvc repro`, `dvc exp run` and
`dvc commit` started meanwhile stop at their first step with DVC's "is busy" message, which names the Snakemake run
and its PID, before they delete or write anything; `dvc status` and `dvc exp show` only read, and still answer.
Experiments run by `dvc queue start` work in their own temporary copies, with their own locks, and go on.
The claim ends before the run's own `dvc commit` (`Claim.release`), or at exit; a run killed outright leaves an entry
whose PID is gone, which DVC and `running_orchestrator` ignore.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

DVC_TMP = Path(".dvc") / "tmp"
REPO_LOCK = DVC_TMP / "lock"
RWLOCKS = (DVC_TMP / "rwlock", DVC_TMP / "exps" / "rwlock")
TOOLS = ("snakemake", "dvc")
WHAT_TO_DO = "is running in this repository; wait for it to finish or stop it, then run again"


@dataclass(frozen=True)
class Running:
    """An orchestrator at work: `command` as typed (`dvc repro`, `snakemake --cores 1`) and its PID."""

    command: str
    pid: int

    def refusal(self, tool: str) -> str:
        """The one line a second orchestrator stops with."""
        who = f"{self.command} (PID {self.pid})" if self.pid else self.command
        return f"{tool}: error: {who} {WHAT_TO_DO}"


def running_orchestrator(root: Path = Path(".")) -> Running | None:
    """The DVC command or Snakemake run working in root, other than this process; None when there is none."""
    return _repo_lock_holder(root) or _live_rwlock_entry(root)


def _repo_lock_holder(root: Path) -> Running | None:
    """Who holds DVC's repository lock, found by trying to take it (and letting go at once)."""
    import zc.lockfile

    path = root / REPO_LOCK
    if not path.is_file():
        return None
    try:
        zc.lockfile.LockFile(str(path)).close()
        return None
    except zc.lockfile.LockError:
        return _recorded_holder(root)


def _recorded_holder(root: Path) -> Running:
    """The PID zc.lockfile wrote into DVC's lock file (" 17808"), with its command line."""
    text = (root / REPO_LOCK).read_text(encoding="utf-8", errors="replace").split()
    pid = int(text[0]) if text and text[0].isdigit() else 0
    return Running(_command_of(pid), pid)


def _live_rwlock_entry(root: Path) -> Running | None:
    """The first entry of DVC's rwlock files whose process is alive and is not this one. Of the experiments'
    file only "workspace" counts: queue workers lock git refs there, and work in copies of their own."""
    for path in RWLOCKS:
        try:
            lock = json.loads((root / path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # absent, or unreadable: DVC itself then says what is wrong with it
        entries = [info for locked, infos in (lock.get("read") or {}).items() if _counts(path, locked)
                   for info in infos]
        entries += [info for locked, info in (lock.get("write") or {}).items() if _counts(path, locked)]
        for info in entries:
            pid = int(info.get("pid", 0))
            if pid != os.getpid() and _alive(pid):
                return Running(_shorten(str(info.get("cmd", ""))), pid)
    return None


def _counts(lock_file: Path, locked: str) -> bool:
    return lock_file.parent.name != "exps" or locked == "workspace"


def _alive(pid: int) -> bool:
    import psutil

    return pid > 0 and psutil.pid_exists(pid)


def _command_of(pid: int) -> str:
    import psutil

    try:
        return _shorten(psutil.Process(pid).cmdline()) if pid > 0 else "a DVC command"
    except (psutil.Error, ValueError):
        return "a DVC command"


def _shorten(command: str | list[str]) -> str:
    """`/venv/bin/python /venv/bin/dvc repro` -> `dvc repro`; a claim's own text -> its command."""
    words = command.split(f" {WHAT_TO_DO}")[0].split() if isinstance(command, str) else command
    start = next((index for index, word in enumerate(words) if Path(word).name in TOOLS), None)
    if start is None:
        return " ".join(words) or "a DVC command"
    return " ".join([Path(words[start]).name, *words[start + 1:]])


@dataclass
class Claim:
    """A Snakemake run's hold on the repository. refusal: the line to stop with when it could not claim it."""

    refusal: str | None = None
    _entries: ExitStack = field(default_factory=ExitStack)

    def release(self) -> None:
        """Remove the run's rwlock entries (before its own `dvc commit`, and at exit); safe to call again."""
        self._entries.close()


def look(root: Path = Path(".")) -> Claim:
    """For a dry run: no claim, only the refusal when another orchestrator works in root."""
    running = running_orchestrator(root)
    return Claim(refusal=running.refusal("snakemake") if running else None)


def claim_workspace(root: Path = Path("."), command: str | None = None) -> Claim:
    """Claim root for this process (a Snakemake run), unless another orchestrator works there (Claim.refusal).
    Outside a DVC project (no .dvc/) there is nothing to claim, and nothing is created."""
    import zc.lockfile
    from dvc.exceptions import DvcException
    from dvc.fs import localfs
    from dvc.rwlock import rwlock

    if not (root / ".dvc").is_dir():
        return Claim()
    command = command or " ".join(["snakemake", *sys.argv[1:]])
    (root / DVC_TMP / "exps").mkdir(parents=True, exist_ok=True)
    try:
        repo_lock = zc.lockfile.LockFile(str(root / REPO_LOCK))
    except zc.lockfile.LockError:
        return Claim(refusal=_recorded_holder(root).refusal("snakemake"))
    claim = Claim()
    try:
        busy = _live_rwlock_entry(root)
        if busy:
            return Claim(refusal=busy.refusal("snakemake"))
        text = f"{command} {WHAT_TO_DO}"  # DVC prints it as the blocker: "(PID 123): snakemake ... is running ..."
        for path, claimed in zip(RWLOCKS, (str(root.resolve()), "workspace"), strict=True):
            claim._entries.enter_context(rwlock(str(root / path.parent), localfs, text, [claimed], [], False))
    except DvcException as error:  # e.g. an rwlock file that is not JSON: DVC's message names it
        claim.release()
        return Claim(refusal=f"snakemake: error: {error}")
    finally:
        repo_lock.close()
    atexit.register(claim.release)
    return claim
