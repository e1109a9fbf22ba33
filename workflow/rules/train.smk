rule train:
    input:
        train=f"{RESULTS}/dataset/train.parquet",
        val=f"{RESULTS}/dataset/val.parquet",
    # choice.json: which model dupnet.pt is (pretrained, fine-tuned, from scratch) and why.
    # update(): Snakemake does not delete the previous model before the job (nor after a
    # failed one); train replaces the four files together once a new set is complete.
    output:
        model=update(f"{RESULTS}/model/dupnet.pt"),
        history=update(f"{RESULTS}/model/history.csv"),
        curves=report(update(f"{RESULTS}/model/curves.png"), category="Training"),
        choice=update(f"{RESULTS}/model/choice.json"),
    params:
        images=IMAGES,
        options=options("train"),
        out_dir=output_dir("model"),
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/tiledup.yaml"
    benchmark:
        f"{RESULTS}/benchmarks/train.tsv"
    log:
        f"{RESULTS}/logs/train.log",
    shell:
        "tiledup train --train {input.train} --val {input.val} --images {params.images:q}"
        " --out-dir {params.out_dir} --workers {threads}"
        " --options {params.options:q} > {log} 2>&1"
