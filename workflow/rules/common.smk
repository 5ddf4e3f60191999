# Shared by every file of rules: the model x seed grid, the code each stage runs, and the params check.
import os
import sys

from mnistbench.errors import MnistbenchError
from mnistbench.params import validate_mapping
from mnistbench.stages import JOURNAL_ENV, Alignment, align_with_dvc, new_run_id, stage_code_files, sync_dvc

try:
    validate_mapping(config, where="params.yaml")
except MnistbenchError as error:
    raise WorkflowError(str(error)) from None

# DVC may have run, restored or recorded outputs since Snakemake last looked: take its word for what is stale
# (`dvc status`, read-only). The jobs of this run journal their completion under RUN_ID for the onsuccess and
# onerror hooks (`record_in_dvc`). A damaged output stops the run here, before anything is deleted.
if workflow.is_main_process:
    RUN_ID = os.environ[JOURNAL_ENV] = new_run_id()
    DVC = align_with_dvc()
    if DVC.damaged:  # one line each, no traceback: nothing has been planned or deleted yet
        sys.exit("\n".join(f"snakemake: error: {line}" for line in DVC.damaged))
else:
    RUN_ID, DVC = None, Alignment(available=False)  # a cluster job: the main process has decided

MODELS = list(config["models"])
SEEDS = config["seeds"]


def code(stage):
    """Source files a stage runs: listed as inputs so that editing them reruns the stage."""
    return stage_code_files(stage)


def aligned(stage, *files):
    """Input function: the inputs of a job of `stage` (a pattern such as "train@{model}-{seed}"), with DVC's
    verdict applied: a stale stage reruns, a current one does not (mnistbench.stages.Alignment)."""
    listed = [name for entry in files for name in ([entry] if isinstance(entry, str) else entry)]
    return lambda wildcards: DVC.inputs(stage.format(**dict(wildcards.items())), listed, ancient)


def record_in_dvc(run_id):
    """onsuccess / onerror: `dvc commit` the stages whose jobs completed in this run (nothing for a dry run)."""
    try:
        recorded = sync_dvc(run_id)
    except MnistbenchError as error:
        raise WorkflowError(str(error)) from None
    if recorded:
        print(f"dvc.lock records the {len(recorded)} stage(s) that ran: {', '.join(recorded)}", file=sys.stderr)


def run_params(wildcards):
    return config["models"][wildcards.model]


def gpu_jobs(wildcards):
    run = config["models"][wildcards.model]
    return 1 if run["impl"] == "torch" and run.get("device") == "cuda" else 0
