# Shared by every file of rules: the model x seed grid, the code each stage runs, and the params check.
import os
import sys

from mnistbench.errors import MnistbenchError
from mnistbench.orchestrators import Claim, claim_workspace, look
from mnistbench.params import validate_mapping
from mnistbench.scheduling import expected_seconds
from mnistbench.stages import (
    JOURNAL_ENV,
    WITHOUT_DVC,
    Alignment,
    align_with_dvc,
    new_run_id,
    stage_code_files,
    sync_dvc,
)

# `--config without_dvc=true`: no DVC verdict, file dates alone decide (a workspace DVC does not manage).
without_dvc = str(config.pop(WITHOUT_DVC, False)).lower() == "true"  # Snakemake passes "true" as a string
try:
    validate_mapping(config, where="params.yaml")
except MnistbenchError as error:
    raise WorkflowError(str(error)) from None

# One orchestrator at a time (mnistbench.orchestrators): a run claims the repository in DVC's own locks, a dry run
# only looks. Then DVC's word for what is stale (`dvc status`, read-only). Without it (another orchestrator at
# work, no DVC project, DVC failing) the first input function stops Snakemake with one line, before it plans a
# job; --lint, which plans none, still lints. The jobs of this run journal their completion under RUN_ID for the
# onsuccess and onerror hooks (`record_in_dvc`). A damaged output stops the run here, before anything is deleted.
if workflow.is_main_process:
    RUN_ID = os.environ[JOURNAL_ENV] = new_run_id()
    CLAIM = look() if workflow.output_settings.dryrun else claim_workspace()
    if CLAIM.refusal:
        DVC = Alignment(available=False, refusal=CLAIM.refusal)
    else:
        DVC = align_with_dvc(without_dvc=without_dvc)
    if DVC.damaged:  # one line each, no traceback: nothing has been planned or deleted yet
        sys.exit("\n".join(f"snakemake: error: {line}" for line in DVC.damaged))
else:
    RUN_ID, CLAIM, DVC = None, Claim(), Alignment(available=False)  # a cluster job: the main process has decided

MODELS = list(config["models"])
SEEDS = config["seeds"]


def code(stage):
    """Source files a stage runs: listed as inputs so that editing them reruns the stage."""
    return stage_code_files(stage)


def aligned(stage, *files):
    """Input function: the inputs of a job of `stage` (a pattern such as "train@{model}-{seed}"), with DVC's
    verdict applied: a stale stage reruns, a current one does not (mnistbench.stages.Alignment)."""
    listed = [name for entry in files for name in ([entry] if isinstance(entry, str) else entry)]

    def inputs(wildcards):
        if DVC.refusal:
            sys.exit(DVC.refusal)
        return DVC.inputs(stage.format(**dict(wildcards.items())), listed, ancient)

    return inputs


def record_in_dvc(run_id):
    """onsuccess / onerror: `dvc commit` the stages whose jobs completed in this run (nothing for a dry run).
    The run's claim ends first: its own `dvc commit` would be refused like any other."""
    CLAIM.release()
    try:
        recorded = sync_dvc(run_id)
    except MnistbenchError as error:
        raise WorkflowError(str(error)) from None
    if recorded:
        print(f"dvc.lock records the {len(recorded)} stage(s) that ran: {', '.join(recorded)}", file=sys.stderr)


def run_params(wildcards):
    return config["models"][wildcards.model]


def longest_first(stage):
    """Priority function: a job's expected seconds (mnistbench.scheduling), so the longest ready job starts first."""

    def priority(wildcards):
        return expected_seconds(stage, run_params(wildcards), config["data"]["n_train"])

    return priority


def gpu_jobs(wildcards):
    run = run_params(wildcards)
    return 1 if run["impl"] == "torch" and run.get("device") == "cuda" else 0
