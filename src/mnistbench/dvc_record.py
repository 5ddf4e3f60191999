"""Record chosen stages in dvc.lock in one pass: the one place mnistbench calls DVC's Python internals.

`dvc commit --force S1 ... SN` handles its targets one at a time (`dvc.commands.commit`): for each it parses
dvc.yaml, params.yaml and dvc.lock again and rewrites dvc.lock, all with ruamel.yaml in pure Python. dvc.lock grows
with the stages recorded, so N targets cost O(N^2) parsing: about a second per stage at 93 stages. Here the stages
are read once (`Repo.index.stages`), each is saved and committed exactly as `dvc commit --force` does (`Stage.save`,
`Stage.commit`), each lock file is written once (`ProjectFile.dump_stages(..., update_pipeline=False)`) and
params.yaml is parsed once (`params_read_once`), all under DVC's repository lock: the body of
`dvc.repo.commit.commit`, for a chosen set of stages rather than one target or all of them. tests/test_dvc_record.py
checks that the lock file it writes is the one `dvc commit --force` writes, so a DVC release that changes these
names or their behaviour fails there, naming the version.

Run as `python -m mnistbench.dvc_record STAGE...` from the project root (mnistbench.stages.sync_dvc does), so that
DVC's imports and logging stay out of the Snakemake process; `python -m mnistbench.dvc_record --status` prints what
`dvc status --json` prints (mnistbench.stages.align_with_dvc), with params.yaml parsed once.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from mnistbench.errors import MnistbenchError
from mnistbench.quickexit import exit_quickly


def commit_stages(names: Iterable[str]) -> list[str]:
    """`dvc commit --force` of the stages `names` (as `dvc status` prints them), with one write of dvc.lock.

    Run from the project root: DVC resolves a stage's paths against the working directory.

    Returns the names recorded, sorted. A name that is no stage of the project is an error, and nothing is recorded.
    """
    from dvc.repo import Repo, lock_repo

    wanted = sorted(set(names))
    with Repo() as repo, lock_repo(repo), params_read_once():
        stages = {_status_name(stage, repo.root_dir): stage for stage in repo.index.stages}
        unknown = [name for name in wanted if name not in stages]
        if unknown:
            raise MnistbenchError(f"dvc.yaml has no stage {', '.join(unknown)}: nothing was recorded in dvc.lock")
        by_file: dict[str, list] = {}
        for name in wanted:
            stage = stages[name]
            stage.save()
            stage.commit()
            by_file.setdefault(stage.dvcfile.path, []).append(stage)
        for group in by_file.values():
            group[0].dvcfile.dump_stages(group, update_pipeline=False)
    return wanted


@contextmanager
def params_read_once() -> Iterator[None]:
    """While it lasts, DVC parses each params file once, not three times per stage (`ParamsDependency.save`, and the
    run cache's `_can_hash` and `_get_stage_hash`): with ruamel.yaml in pure Python and a params.yaml that grows
    with the models, that was most of the time left. The repository is locked and nothing edits params meanwhile;
    each caller gets its own copy."""
    from dvc.dependency import param

    original = param.load_path
    parsed: dict[tuple[str, int, str], Any] = {}

    def load_once(path, fs, **kwargs):
        key = (path, id(fs), repr(sorted(kwargs.items())))
        if key not in parsed:
            parsed[key] = original(path, fs, **kwargs)
        return copy.deepcopy(parsed[key])

    param.load_path = load_once
    try:
        yield
    finally:
        param.load_path = original


def _status_name(stage, root_dir: str) -> str:
    """A stage's name as `dvc status` prints it when run from the project root: `train@M-N`, `sub/dvc.yaml:name`."""
    where = os.path.relpath(stage.path, root_dir)
    name = getattr(stage, "name", None)
    return where if name is None else name if where == "dvc.yaml" else f"{where}:{name}"


def status() -> dict[str, Any]:
    """What `dvc status --json` prints, parsed: the stale stages and why, with params.yaml parsed once, not once per
    stage (at 64 models that made `dvc status` grow with the square of the models). Read-only, as the CLI."""
    from dvc.repo import Repo, lock_repo

    with Repo() as repo, lock_repo(repo), params_read_once():
        return repo.status(check_updates=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m mnistbench.dvc_record STAGE...` commits the stages; `--status` prints `dvc status --json`."""
    from dvc.exceptions import DvcException

    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["--status"]:
            print(json.dumps(status()))
        else:
            commit_stages(argv)
    except (MnistbenchError, DvcException) as error:
        print(f"mnistbench.dvc_record: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    exit_quickly(main())
