# The mnistbench pipeline for Snakemake: download -> prepare -> train -> evaluate -> report.
# Thin on purpose: every rule calls the `mnistbench` CLI, exactly as the stages of dvc.yaml do.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


# `snakemake --report report.zip`: this text on its front page, the results marked report() in report.smk.
report: "workflow/report/workflow.rst"


# common.smk checks the params first, against workflow/schemas/params.schema.yaml, with the CLI's one-line messages.
include: "workflow/rules/common.smk"


wildcard_constraints:
    model="[A-Za-z][A-Za-z0-9_]*",
    seed=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "reports/report.html",


# dvc.lock records exactly the jobs that completed in this run, whatever the flags (see mnistbench.stages).
onsuccess:
    record_in_dvc(RUN_ID)


onerror:
    record_in_dvc(RUN_ID)
