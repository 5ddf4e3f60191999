rule download:
    input:
        aligned("download", code("download")),
    output:
        "data/raw/mnist.npz",
        "data/raw/source.json",
    params:
        source=config["data"]["source"],
    resources:
        mem_mb=1000,
        runtime=15,
    log:
        "logs/download.log",
    shell:
        "mnistbench --log {log} download"


rule prepare:
    input:
        aligned("prepare", code("prepare"), "data/raw/mnist.npz", "data/raw/source.json"),
    output:
        "data/prepared/train.npz",
        "data/prepared/val.npz",
        "data/prepared/test.npz",
        "data/prepared/stats.json",
    params:
        data={key: value for key, value in config["data"].items() if key != "source"},
    resources:
        mem_mb=2000,
        runtime=15,
    log:
        "logs/prepare.log",
    shell:
        "mnistbench --log {log} prepare"
