checkpoint manifest:
    input:
        IMAGES,
    output:
        manifest=f"{RESULTS}/manifest/manifest.parquet",
        lists=expand(f"{RESULTS}/manifest/{{shard}}.txt", shard=SHARDS),
    params:
        shards=config["shards"],
    conda:
        "../../envs/tiledup.yaml"
    log:
        f"{RESULTS}/logs/manifest.log",
    shell:
        "tiledup manifest --images {input:q} --shards {params.shards}"
        " --out {output.manifest} > {log} 2>&1"


rule tile_shard:
    input:
        manifest=ancient(f"{RESULTS}/manifest/manifest.parquet"),
        images=shard_list,
    output:
        tiles=f"{RESULTS}/tiles/{{shard}}.parquet",
        rejects=f"{RESULTS}/rejects/{{shard}}.parquet",
    params:
        images=IMAGES,
        digest=shard_digest,
        options=options("tiles"),
    conda:
        "../../envs/tiledup.yaml"
    log:
        f"{RESULTS}/logs/tiles/{{shard}}.log",
    shell:
        "tiledup tiles --images {params.images:q} --list {input.images}"
        " --out {output.tiles} --rejects {output.rejects}"
        " --options {params.options:q} > {log} 2>&1"


rule tiles:
    input:
        expand(f"{RESULTS}/tiles/{{shard}}.parquet", shard=SHARDS),
