rule demo:
    output:
        images=directory(f"{RESULTS}/demo/images"),
        truth=f"{RESULTS}/demo/dup_truth.txt",
        layout=f"{RESULTS}/demo/layout.parquet",
    params:
        options=options("demo"),
    log:
        f"{RESULTS}/logs/demo.log",
    shell:
        "tiledup demo --images {output.images} --truth {output.truth}"
        " --layout {output.layout} --options {params.options:q} > {log} 2>&1"
