# Shared by every file of rules: the model x seed grid, the code each stage runs, and the params check.
from mnistbench.errors import MnistbenchError
from mnistbench.params import validate_mapping
from mnistbench.stages import align_snakemake_with_dvc, stage_code_files

try:
    validate_mapping(config, where="params.yaml")
except MnistbenchError as error:
    raise WorkflowError(str(error)) from None

# DVC may have run, restored or recorded outputs since Snakemake last looked: take its word for what is stale.
if workflow.is_main_process:
    align_snakemake_with_dvc()

MODELS = list(config["models"])
SEEDS = config["seeds"]


def code(stage):
    """Source files a stage runs: listed as inputs so that editing them reruns the stage."""
    return stage_code_files(stage)


def run_params(wildcards):
    return config["models"][wildcards.model]


def gpu_jobs(wildcards):
    run = config["models"][wildcards.model]
    return 1 if run["impl"] == "torch" and run.get("device") == "cuda" else 0
