rule train:
    input:
        aligned(
            "train@{model}-{seed}",
            code("train"),
            "data/prepared/train.npz",
            "data/prepared/val.npz",
            "data/prepared/stats.json",
        ),
    output:
        "data/models/{model}/seed{seed}.npz",
        "reports/train/{model}/seed{seed}.json",
    log:
        "logs/train/{model}/seed{seed}.log",
    priority: longest_first("train")
    threads: 1
    resources:
        gpu=gpu_jobs,
        mem_mb=2000,
        runtime=60,
    params:
        run=run_params,
        network=config["network"],
    shell:
        "mnistbench --log {log} train --model {wildcards.model} --seed {wildcards.seed} --threads {threads}"
