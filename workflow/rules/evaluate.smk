rule evaluate:
    input:
        model=f"{RESULTS}/model/dupnet.pt",
        val=f"{RESULTS}/dataset/val.parquet",
        tiles=expand(f"{RESULTS}/tiles/{{shard}}.parquet", shard=SHARDS),
        rejects=expand(f"{RESULTS}/rejects/{{shard}}.parquet", shard=SHARDS),
        truth=TRUTH or [],
        candidates=f"{RESULTS}/overlaps/candidates.parquet",
        overlaps=f"{RESULTS}/overlaps/overlaps.parquet",
        groups=f"{RESULTS}/groups/groups.parquet",
        conflicts=f"{RESULTS}/groups/conflicts.parquet",
        layout=LAYOUT or [],
    output:
        scores=f"{RESULTS}/eval/scores.parquet",
        metrics=f"{RESULTS}/eval/metrics.json",
        report=report(f"{RESULTS}/eval/report.html", category="Evaluation"),
        roc=report(f"{RESULTS}/eval/roc.png", category="Evaluation"),
        pr=report(f"{RESULTS}/eval/pr.png", category="Evaluation"),
    params:
        images=IMAGES,
        truth=optional_input("truth"),
        layout=optional_input("layout"),
        out_dir=output_dir("metrics"),
        options=options("evaluate"),
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/tiledup.yaml"
    log:
        f"{RESULTS}/logs/evaluate.log",
    shell:
        "tiledup evaluate --truth={params.truth:q} --images {params.images:q}"
        " --model {input.model} --val {input.val} --tiles {input.tiles}"
        " --rejects {input.rejects} --out-dir {params.out_dir}"
        " --candidates {input.candidates} --overlaps {input.overlaps} --groups {input.groups}"
        " --conflicts {input.conflicts} --layout={params.layout:q}"
        " --options {params.options:q} > {log} 2>&1"
