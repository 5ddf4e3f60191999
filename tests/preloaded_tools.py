"""`snakemake` and `dvc` for the end-to-end tests, started from a process that has imported them already.

A `snakemake` command spends about 1.4 s of CPU importing Snakemake (and, through the SLURM plugin, pandas) before
it reads the Snakefile, and a `dvc` command about 0.45 s importing DVC; the end-to-end tests run them about a
hundred and fifty times. So `pipeline_helpers.run` hands these two tools to servers (this file run as a script):
one process per tool and test worker that imports the tool's console-script entry point once, then forks a child
for each command. The child is what the console script would be, minus the imports: its own PID, working directory,
environment, arguments (`sys.argv[0]` the script's path), stdin from /dev/null, stdout and stderr into files that
the caller reads as `subprocess.run(capture_output=True, text=True)` would, and the interpreter's ordinary exit
(atexit handlers, flushed streams). The server has one thread, so the fork copies no lock held by another, and it
freezes what it imported out of the garbage collector's reach (`gc.freeze`): otherwise each child's collections
walked, and so copied, every page of it (a preloaded `snakemake -n` of the fixture pipeline took 0.92 s, 0.48 s now).
A `snakemake` child runs the Python programs it starts for DVC (`NESTED`: the verdict at its start, the record in
dvc.lock at its end) in a fork of itself, as their main() (0.17 s instead of a 0.52 s process).

Only a command whose script is this venv's runs here, and only with the environment the server started with (the
import of tqdm reads TQDM_* variables, for instance), but for PYTEST_CURRENT_TEST, which pytest sets anew for each
test and no tool reads at import; anything else, and every command while
MNISTBENCH_TESTS_PRELOAD=0, runs as its own process. What differs from a process of its own: /proc/PID/cmdline
names this script, so a tool that reads another process's command line there (psutil) sees the server's; the tests
that check such a name start that tool with subprocess.Popen.
"""

from __future__ import annotations

import gc
import importlib
import json
import locale
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

# Each tool's server imports its console script's entry point and these modules, which its commands import later on
# (`python -X importtime` of `snakemake -n`, and of `dvc status`, `dvc repro` and `dvc checkout`): a child then
# finds loaded what the command would load, and nothing it would not (a module's atexit handlers run at its exit).
PRELOAD = {
    "snakemake": ("snakemake.report", "smart_open"),
    "dvc": ("configobj", "dulwich.ignore", "dulwich.worktree", "dvc.cli.parser", "dvc.config", "dvc.dirs", "dvc.lock",
            "dvc.repo", "dvc.repo.index", "dvc.repo.plots", "dvc.repo.stage", "dvc.rwlock", "dvc.scm",
            "dvc.ui.pager", "dvc.utils.table", "dvc_data.fs", "dvc_data.index.checkout", "networkx", "pygit2",
            "pyparsing", "rich.console", "rich.text", "ruamel.yaml", "scmrepo.fs"),
}
TOOLS = tuple(PRELOAD)
# Python programs a tool's child starts as `subprocess.run([sys.executable, "-m", MODULE, ...], capture_output=True)`,
# run instead in a fork of the child, as MODULE.main() (what the module's `__main__` block runs), with what the server
# preloaded: Snakemake asks DVC's verdict at each start and records the jobs that ran in dvc.lock at its end
# (mnistbench.stages, through mnistbench.dvc_record), each time a Python process that spends ~0.45 s importing DVC.
# So the Snakemake server also preloads DVC, for those forks: the one set of modules a `snakemake` child finds loaded
# that its own process would not load. Their one atexit handler, colorama's reset_all, writes only to a terminal, and a
# child's stdout is a file.
NESTED = {"snakemake": ("mnistbench.dvc_record",)}
PRELOAD["snakemake"] += (*NESTED["snakemake"], *PRELOAD["dvc"], "dvc.dependency.param")
# Values a module computes from the working directory when it is imported: recomputed in each child, which works in
# another directory than the server's (Snakemake prints this one as "Run directory").
IMPORT_TIME_CWD = (("snakemake.workflow", "Workflow", "_rundir"),)
BIN = Path(sys.executable).parent


def wanted(command: tuple[str, ...], env: dict[str, str]) -> bool:
    """Whether `command` can run in a preloaded server: one of TOOLS, found as this venv's script on env's PATH."""
    if not command or command[0] not in TOOLS or os.environ.get("MNISTBENCH_TESTS_PRELOAD") == "0":
        return False
    found = shutil.which(command[0], path=env.get("PATH"))
    return found is not None and Path(found) == BIN / command[0]


class Server:
    """The client side: a server process for one tool and one environment, one command at a time."""

    def __init__(self, tool: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, tool], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env, text=True)
        self.lock = threading.Lock()

    def run(self, command: tuple[str, ...], cwd: Path, env: dict[str, str], timeout: float
            ) -> subprocess.CompletedProcess:
        """`subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)`."""
        with self.lock, tempfile.TemporaryDirectory(prefix="preloaded-") as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            request = {"argv": [str(BIN / command[0]), *command[1:]], "cwd": str(Path(cwd).resolve()),
                       "env": env, "stdout": str(out), "stderr": str(err), "timeout": timeout}
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the preloaded-tools server stopped (exit {self.process.wait()})")
            reply = json.loads(line)
            stdout, stderr = captured(out, err, text=True)
        if reply["timed_out"]:
            raise subprocess.TimeoutExpired(list(command), timeout, stdout, stderr)
        return subprocess.CompletedProcess(list(command), reply["returncode"], stdout, stderr)


_servers: dict[tuple, Server] = {}
# Set anew by pytest for every test, and read by no tool when it is imported: a server serves every test.
PER_TEST = ("PYTEST_CURRENT_TEST",)


def run(command: tuple[str, ...], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run a command for which wanted() holds, in this process's server for its tool and `env` (started on first
    use); the child gets `env` whole."""
    imported_with = {name: value for name, value in env.items() if name not in PER_TEST}
    key = (command[0], *sorted(imported_with.items()))
    if key not in _servers:
        _servers[key] = Server(command[0], imported_with)
    return _servers[key].run(command, cwd, env, timeout)


# --- the server -------------------------------------------------------------------------------------------------


def serve(tool: str) -> None:
    from importlib.metadata import entry_points

    sys.path[0] = str(BIN)  # as for the console script, whose folder heads sys.path, not tests/
    main = next(iter(entry_points(group="console_scripts", name=tool))).load()
    for module in PRELOAD[tool]:
        importlib.import_module(module)
    # What the server imported is never garbage: a child's collections skip it, instead of touching (and so copying)
    # every page of it.
    gc.freeze()
    requests, replies = os.fdopen(os.dup(0), "r"), os.fdopen(os.dup(1), "w")
    quiet = os.open(os.devnull, os.O_RDWR)
    os.dup2(quiet, 0)
    os.dup2(quiet, 1)
    os.close(quiet)
    for line in requests:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            requests.close()
            replies.close()
            become(request, main, NESTED.get(tool, ()))
        replies.write(json.dumps(wait_for(pid, request["timeout"])) + "\n")
        replies.flush()
    os._exit(0)  # the test process has gone: nothing of the server's to clean up


def become(request: dict, main, nested: tuple[str, ...]) -> None:
    """In the forked child: take the command's place and run its console script's entry point; never returns."""
    redirect(request["stdout"], request["stderr"])
    if nested:
        subprocess.run = run_nested(subprocess.run, nested)
    os.chdir(request["cwd"])
    for module, owner, name in IMPORT_TIME_CWD:
        if module in sys.modules:
            setattr(getattr(sys.modules[module], owner), name, str(Path.cwd().absolute()))
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = request["argv"]
    raise SystemExit(main())  # up through serve(): the interpreter then exits as the script's would


def redirect(stdout: str | Path, stderr: str | Path) -> None:
    """stdin from /dev/null, stdout and stderr into these files, at the file descriptors."""
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, stdout, os.O_WRONLY | os.O_CREAT),
                            (2, stderr, os.O_WRONLY | os.O_CREAT)):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)


def run_nested(original, modules: tuple[str, ...]):
    """subprocess.run, but for `[sys.executable, "-m", M, ...]` with M in `modules`, captured, which run_forked runs."""

    def run(args, *positional, **options):
        command = list(args) if isinstance(args, list | tuple) else []
        if (command[:2] == [sys.executable, "-m"] and len(command) > 2 and command[2] in modules and not positional
                and options.get("capture_output") and set(options) <= {"cwd", "capture_output", "text"}):
            return run_forked(command, options.get("cwd"), bool(options.get("text")))
        return original(args, *positional, **options)

    return run


def run_forked(command: list[str], cwd, text: bool) -> subprocess.CompletedProcess:
    """`subprocess.run(command, cwd=cwd, capture_output=True, text=text)` for `[python, "-m", MODULE, *args]`: a fork
    runs MODULE.main() with sys.argv as `python -m` sets it, and exits with its code as the module's `__main__`
    block (`exit_quickly(main())`, `raise SystemExit(main())`) would."""
    with tempfile.TemporaryDirectory(prefix="preloaded-nested-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                redirect(out, err)
                # New streams on the descriptors (the tool may have wrapped its own), open until os._exit.
                sys.stdout, sys.stderr = (open(fd, "w", closefd=False) for fd in (1, 2))  # noqa: SIM115
                if cwd is not None:
                    os.chdir(cwd)
                module = importlib.import_module(command[2])
                sys.argv = [module.__file__, *command[3:]]
                code = module.main()
            except SystemExit as stop:
                code = stop.code
            except BaseException:
                traceback.print_exc()
            finally:
                if not isinstance(code, int):  # as the interpreter exits for SystemExit(None) or SystemExit("text")
                    if code is not None:
                        print(code, file=sys.stderr)
                    code = 0 if code is None else 1
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        stdout, stderr = captured(out, err, text=text)
    return subprocess.CompletedProcess(command, os.waitstatus_to_exitcode(status), stdout, stderr)


def captured(*paths: Path, text: bool) -> list[str] | list[bytes]:
    """What a child wrote into these files, as subprocess's capture_output gives it: str in the locale's encoding
    with universal newlines when `text`, else bytes; empty for a file it never opened."""
    if text:
        encoding = locale.getpreferredencoding(False)
        return [path.read_text(encoding=encoding) if path.exists() else "" for path in paths]
    return [path.read_bytes() if path.exists() else b"" for path in paths]


def wait_for(pid: int, timeout: float) -> dict:
    """The child's exit code as subprocess gives it (-N for signal N); killed after `timeout` seconds, as
    subprocess.run kills the child it started."""
    handle = os.pidfd_open(pid)
    ready, _, _ = select.select([handle], [], [], timeout)
    os.close(handle)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return {"returncode": os.waitstatus_to_exitcode(status), "timed_out": not ready}


if __name__ == "__main__":
    serve(sys.argv[1])
