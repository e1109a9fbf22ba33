checkpoint manifest:
    input:
        images=IMAGES,
        truth=TRUTH or [],
    output:
        manifest=f"{RESULTS}/manifest/manifest.parquet",
        # One folder for every list, so the outputs do not depend on the shard count
        # (new per-shard outputs would hide the changed `shards` param from Snakemake).
        lists=directory(f"{RESULTS}/manifest/shards"),
    params:
        shards=config["shards"],
        truth=optional_input("truth"),
        on_bad_truth=config["on_bad_truth"],
    conda:
        "../../envs/tiledup.yaml"
    benchmark:
        f"{RESULTS}/benchmarks/manifest.tsv"
    log:
        f"{RESULTS}/logs/manifest.log",
    shell:
        "tiledup manifest --images {input.images:q} --shards {params.shards}"
        " --out {output.manifest} --lists {output.lists}"
        " --truth={params.truth:q} --on-bad-truth {params.on_bad_truth} > {log} 2>&1"


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
        # the table's columns: a results folder tiled by a version without a new column is tiled again
        columns=",".join(TILE_SCHEMA.names),
    conda:
        "../../envs/tiledup.yaml"
    benchmark:
        f"{RESULTS}/benchmarks/tile_shard/{{shard}}.tsv"
    log:
        f"{RESULTS}/logs/tiles/{{shard}}.log",
    shell:
        "tiledup tiles --images {params.images:q} --list {input.images}"
        " --out {output.tiles} --rejects {output.rejects}"
        " --options {params.options:q} > {log} 2>&1"


rule rejects:
    input:
        manifest=f"{RESULTS}/manifest/manifest.parquet",
        rejects=expand(f"{RESULTS}/rejects/{{shard}}.parquet", shard=SHARDS),
    output:
        REJECTS,
    conda:
        "../../envs/tiledup.yaml"
    benchmark:
        f"{RESULTS}/benchmarks/rejects.tsv"
    log:
        f"{RESULTS}/logs/rejects.log",
    shell:
        "tiledup rejects --manifest {input.manifest} --rejects {input.rejects}"
        " --out {output} > {log} 2>&1"


rule tiles:
    input:
        expand(f"{RESULTS}/tiles/{{shard}}.parquet", shard=SHARDS),
        REJECTS,
