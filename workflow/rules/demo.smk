rule demo:
    output:
        images=directory(f"{RESULTS}/demo/images"),
        truth=f"{RESULTS}/demo/dup_truth.txt",
        layout=f"{RESULTS}/demo/layout.parquet",
    params:
        options=options("demo"),
    conda:
        "../../envs/tiledup.yaml"
    benchmark:
        f"{RESULTS}/benchmarks/demo.tsv"
    log:
        f"{RESULTS}/logs/demo.log",
    threads: 2
    shell:
        "tiledup demo --images {output.images} --truth {output.truth}"
        " --layout {output.layout} --workers {threads} --options {params.options:q} > {log} 2>&1"
