rule report:
    input:
        aligned(
            "report",
            code("report"),
            "data/raw/mnist.npz",
            "data/raw/source.json",
            "data/prepared/stats.json",
            expand("reports/train/{model}/seed{seed}.json", model=MODELS, seed=SEEDS),
            expand("reports/eval/{model}/seed{seed}.json", model=MODELS, seed=SEEDS),
        ),
    output:
        "reports/metrics.json",
        "reports/summary.json",
        "reports/report.html",
        "reports/plots/learning_curves.csv",
        directory("reports/plots/curves"),
        directory("reports/plots/confusion"),
    log:
        "logs/report.log",
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        all_params=config,
    shell:
        "mnistbench --log {log} report"
