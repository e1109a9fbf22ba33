rule evaluate:
    input:
        model=f"{RESULTS}/model/dupnet.pt",
        val=f"{RESULTS}/dataset/val.parquet",
        tiles=expand(f"{RESULTS}/tiles/{{shard}}.parquet", shard=SHARDS),
        rejects=REJECTS,
        layout=LAYOUT or [],
        candidates=f"{RESULTS}/overlaps/candidates.parquet",
        verified=f"{RESULTS}/overlaps/overlaps.parquet",
        groups=f"{RESULTS}/groups/groups.parquet",
        conflicts=f"{RESULTS}/groups/conflicts.parquet",
        split=f"{RESULTS}/groups/split.csv",
        verdicts=VERDICTS or [],
        duplicates=f"{RESULTS}/groups/duplicates.json",
        removable=f"{RESULTS}/groups/removable.txt",
        **CHECKED_TRUTH,
    output:
        scores=f"{RESULTS}/eval/scores.parquet",
        metrics=f"{RESULTS}/eval/metrics.json",
        report=report(f"{RESULTS}/eval/report.html", category="Evaluation"),
        errors=f"{RESULTS}/eval/errors.csv",
        roc=report(f"{RESULTS}/eval/roc.png", category="Evaluation"),
        pr=report(f"{RESULTS}/eval/pr.png", category="Evaluation"),
    params:
        images=IMAGES,
        truth=TRUTH,
        overlaps=optional_input("overlaps"),
        skipped=optional_input("skipped"),
        layout=optional_input("layout"),
        verdicts=optional_input("verdicts"),
        truth_complete="--truth-complete" if TRUTH_COMPLETE else "",
        out_dir=output_dir("metrics"),
        options=options("evaluate"),
        evidence=options("evidence"),
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/tiledup.yaml"
    benchmark:
        f"{RESULTS}/benchmarks/evaluate.tsv"
    log:
        f"{RESULTS}/logs/evaluate.log",
    shell:
        "tiledup evaluate --truth={params.truth:q} --overlaps={params.overlaps}"
        " --skipped={params.skipped} --images {params.images:q}"
        " --model {input.model} --val {input.val} --tiles {input.tiles}"
        " --rejects {input.rejects} --layout={params.layout:q} --out-dir {params.out_dir}"
        " --candidates {input.candidates} --verified {input.verified} --groups {input.groups}"
        " --conflicts {input.conflicts} --split {input.split} --verdicts={params.verdicts:q}"
        " {params.truth_complete} --duplicates {input.duplicates} --removable {input.removable}"
        " --evidence {params.evidence:q} --options {params.options:q} > {log} 2>&1"
