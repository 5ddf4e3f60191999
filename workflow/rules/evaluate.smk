rule evaluate:
    input:
        aligned(
            "evaluate@{model}-{seed}",
            code("evaluate"),
            "data/prepared/test.npz",
            "data/models/{model}/seed{seed}.npz",
            "reports/train/{model}/seed{seed}.json",
        ),
    output:
        "reports/eval/{model}/seed{seed}.json",
    log:
        "logs/evaluate/{model}/seed{seed}.log",
    priority: longest_first("evaluate")
    threads: 1
    resources:
        gpu=gpu_jobs,
        mem_mb=2000,
        runtime=15,
    params:
        run=run_params,
        network=config["network"],
        evaluate=config.get("evaluate", {}),
    shell:
        "mnistbench --log {log} evaluate --model {wildcards.model} --seed {wildcards.seed} --threads {threads}"
