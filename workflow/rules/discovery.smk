rule candidates:
    input:
        tiles=expand(f"{RESULTS}/tiles/{{shard}}.parquet", shard=SHARDS),
    output:
        f"{RESULTS}/overlaps/candidates.parquet",
    params:
        options=options("candidates"),
    conda:
        "../../envs/tiledup.yaml"
    benchmark:
        f"{RESULTS}/benchmarks/candidates.tsv"
    log:
        f"{RESULTS}/logs/candidates.log",
    shell:
        "tiledup candidates --tiles {input.tiles} --out {output}"
        " --options {params.options:q} > {log} 2>&1"


rule verify:
    input:
        candidates=f"{RESULTS}/overlaps/candidates.parquet",
        model=f"{RESULTS}/model/dupnet.pt",
        tiles=expand(f"{RESULTS}/tiles/{{shard}}.parquet", shard=SHARDS),
    output:
        overlaps=f"{RESULTS}/overlaps/overlaps.parquet",
        truth=f"{RESULTS}/overlaps/dup_truth.txt",
    params:
        images=IMAGES,
        options=options("verify"),
        evidence=options("evidence"),
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/tiledup.yaml"
    benchmark:
        f"{RESULTS}/benchmarks/verify.tsv"
    log:
        f"{RESULTS}/logs/verify.log",
    shell:
        "tiledup verify --candidates {input.candidates} --images {params.images:q}"
        " --model {input.model} --tiles {input.tiles} --out {output.overlaps}"
        " --truth {output.truth} --evidence {params.evidence:q}"
        " --options {params.options:q} > {log} 2>&1"


rule groups:
    input:
        overlaps=f"{RESULTS}/overlaps/overlaps.parquet",
        tiles=expand(f"{RESULTS}/tiles/{{shard}}.parquet", shard=SHARDS),
    output:
        groups=f"{RESULTS}/groups/groups.parquet",
        split=f"{RESULTS}/groups/split.csv",
        conflicts=f"{RESULTS}/groups/conflicts.parquet",
    params:
        options=options("groups"),
    conda:
        "../../envs/tiledup.yaml"
    benchmark:
        f"{RESULTS}/benchmarks/groups.tsv"
    log:
        f"{RESULTS}/logs/groups.log",
    shell:
        "tiledup groups --overlaps {input.overlaps} --tiles {input.tiles} --out {output.groups}"
        " --split {output.split} --conflicts {output.conflicts}"
        " --options {params.options:q} > {log} 2>&1"
