rule download:
    input:
        aligned("download", code("download")),
    output:
        "data/raw/mnist.npz",
        "data/raw/source.json",
    log:
        "logs/download.log",
    resources:
        mem_mb=1000,
        runtime=15,
    params:
        source=config["data"]["source"],
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
    log:
        "logs/prepare.log",
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        data={key: value for key, value in config["data"].items() if key != "source"},
    shell:
        "mnistbench --log {log} prepare"
