rule dataset:
    input:
        pairs=expand(f"{RESULTS}/pairs/{{shard}}.parquet", shard=SHARDS),
        layout=LAYOUT or [],
        # Not read: sampling waits for these checks, so no training starts on a
        # dataset whose images were all rejected or on a bad truth file. ancient():
        # a re-checked truth file (edited, or on_bad_truth changed) must not retrain.
        checks=[ancient(REJECTS), *map(ancient, CHECKED_TRUTH.values())],
    output:
        train=f"{RESULTS}/dataset/train.parquet",
        val=f"{RESULTS}/dataset/val.parquet",
        test=f"{RESULTS}/dataset/test.parquet",
        counts=f"{RESULTS}/dataset/counts.json",
    params:
        layout=optional_input("layout"),
        out_dir=output_dir("counts"),
        options=options("sample"),
    conda:
        "../../envs/tiledup.yaml"
    benchmark:
        f"{RESULTS}/benchmarks/dataset.tsv"
    log:
        f"{RESULTS}/logs/dataset.log",
    shell:
        "tiledup dataset --pairs {input.pairs} --layout={params.layout:q}"
        " --out-dir {params.out_dir} --options {params.options:q} > {log} 2>&1"
