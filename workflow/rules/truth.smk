# Only with a truth file: without one, evaluate says so and scores nothing.
if TRUTH:

    rule truth:
        input:
            truth=TRUTH,
            manifest=f"{RESULTS}/manifest/manifest.parquet",
            rejects=REJECTS,
        output:
            **CHECKED_TRUTH,
        params:
            images=IMAGES,
            on_bad_truth=config["on_bad_truth"],
        conda:
            "../../envs/tiledup.yaml"
        benchmark:
            f"{RESULTS}/benchmarks/truth.tsv"
        log:
            f"{RESULTS}/logs/truth.log",
        shell:
            "tiledup truth --truth {input.truth:q} --manifest {input.manifest} --rejects {input.rejects}"
            " --images {params.images:q} --overlaps {output.overlaps} --skipped {output.skipped}"
            " --on-bad-truth {params.on_bad_truth} > {log} 2>&1"
