rule train:
    input:
        train=f"{RESULTS}/dataset/train.parquet",
        val=f"{RESULTS}/dataset/val.parquet",
    output:
        model=f"{RESULTS}/model/dupnet.pt",
        history=f"{RESULTS}/model/history.csv",
        curves=report(f"{RESULTS}/model/curves.png", category="Training"),
    params:
        images=IMAGES,
        options=options("train"),
    threads: 2
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/train.log",
    shell:
        "tiledup train --train {input.train} --val {input.val} --images {params.images}"
        " --out-dir {RESULTS}/model --workers {threads}"
        " --options {params.options:q} > {log} 2>&1"
