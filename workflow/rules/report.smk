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
    # report(): what `snakemake --report report.zip` shows, by category, captioned by workflow/report/*.rst.
    output:
        "reports/metrics.json",
        report(
            "reports/summary.json",
            caption="../report/summary.rst",
            category="3. Summary for DVC",
        ),
        report(
            "reports/report.html",
            caption="../report/comparison.rst",
            category="1. The comparison",
        ),
        report(
            "reports/plots/learning_curves.csv",
            caption="../report/learning_curves.rst",
            category="2. Figures' data",
            subcategory="Learning curves",
        ),
        report(
            directory("reports/plots/curves"),
            patterns=["{model}.csv"],
            caption="../report/curves.rst",
            category="2. Figures' data",
            subcategory="Learning curves",
            labels={"model": "{model}", "figure": "mean learning curve"},
        ),
        report(
            directory("reports/plots/confusion"),
            patterns=["{model}.csv"],
            caption="../report/confusion.rst",
            category="2. Figures' data",
            subcategory="Confusion matrices",
            labels={"model": "{model}", "figure": "confusion matrix"},
        ),
    log:
        "logs/report.log",
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        all_params=config,
    shell:
        "mnistbench --log {log} report"
