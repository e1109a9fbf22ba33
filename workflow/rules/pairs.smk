rule pair_shard:
    input:
        f"{RESULTS}/tiles/{{shard}}.parquet",
    output:
        f"{RESULTS}/pairs/{{shard}}.parquet",
    params:
        options=options("pairs"),
    conda:
        "../../envs/tiledup.yaml"
    benchmark:
        f"{RESULTS}/benchmarks/pair_shard/{{shard}}.tsv"
    log:
        f"{RESULTS}/logs/pairs/{{shard}}.log",
    shell:
        "tiledup pairs --tiles {input} --out {output}"
        " --options {params.options:q} > {log} 2>&1"


rule pairs:
    input:
        expand(f"{RESULTS}/pairs/{{shard}}.parquet", shard=SHARDS),
        REJECTS,
