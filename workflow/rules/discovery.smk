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
        place_votes=config["candidates"]["place_votes"],
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
        " --workers {threads} --place-votes {params.place_votes} --options {params.options:q} > {log} 2>&1"


rule groups:
    input:
        overlaps=f"{RESULTS}/overlaps/overlaps.parquet",
        candidates=f"{RESULTS}/overlaps/candidates.parquet",
        tiles=expand(f"{RESULTS}/tiles/{{shard}}.parquet", shard=SHARDS),
        verdicts=VERDICTS or [],
    output:
        groups=f"{RESULTS}/groups/groups.parquet",
        split=f"{RESULTS}/groups/split.csv",
        conflicts=f"{RESULTS}/groups/conflicts.parquet",
        leaks=f"{RESULTS}/groups/leaks.json",
    params:
        verdicts=optional_input("verdicts"),
        place_votes=config["candidates"]["place_votes"],
        options=options("groups"),
    conda:
        "../../envs/tiledup.yaml"
    benchmark:
        f"{RESULTS}/benchmarks/groups.tsv"
    log:
        f"{RESULTS}/logs/groups.log",
    shell:
        "tiledup groups --overlaps {input.overlaps} --candidates {input.candidates} --tiles {input.tiles}"
        " --verdicts={params.verdicts:q} --place-votes {params.place_votes}"
        " --out {output.groups} --split {output.split}"
        " --conflicts {output.conflicts} --leaks {output.leaks}"
        " --options {params.options:q} > {log} 2>&1"


# Only with `split_check`: a user's own split checked against the duplicates found.
if SPLIT_CHECK:

    rule split_check:
        input:
            split=SPLIT_CHECK,
            overlaps=f"{RESULTS}/overlaps/overlaps.parquet",
            groups=f"{RESULTS}/groups/groups.parquet",
            verdicts=VERDICTS or [],
        output:
            report=SPLIT_CHECK_REPORT,
            leaks=f"{RESULTS}/groups/split_check.csv",
        params:
            verdicts=optional_input("verdicts"),
        conda:
            "../../envs/tiledup.yaml"
        benchmark:
            f"{RESULTS}/benchmarks/split_check.tsv"
        log:
            f"{RESULTS}/logs/split_check.log",
        shell:
            "tiledup check-split {input.split:q} --overlaps {input.overlaps} --groups {input.groups}"
            " --verdicts={params.verdicts:q} --out {output.report} --csv {output.leaks} > {log} 2>&1"
# Exports for other tools: the duplicate map (imagededup-like) and the chips safe to drop, after a person's verdicts.
rule exports:
    input:
        overlaps=f"{RESULTS}/overlaps/overlaps.parquet",
        groups=f"{RESULTS}/groups/groups.parquet",
        tiles=expand(f"{RESULTS}/tiles/{{shard}}.parquet", shard=SHARDS),
        verdicts=VERDICTS or [],
    output:
        duplicates=f"{RESULTS}/groups/duplicates.json",
        removable=f"{RESULTS}/groups/removable.txt",
    params:
        verdicts=optional_input("verdicts"),
    conda:
        "../../envs/tiledup.yaml"
    benchmark:
        f"{RESULTS}/benchmarks/exports.tsv"
    log:
        f"{RESULTS}/logs/exports.log",
    shell:
        "tiledup exports --overlaps {input.overlaps} --groups {input.groups} --tiles {input.tiles}"
        " --verdicts={params.verdicts:q} --duplicates {output.duplicates} --removable {output.removable}"
        " > {log} 2>&1"
