"""tiledup.run.slurm's reading of SLURM records and sbatch calls, on text SLURM 22.05 printed.

The check itself runs against a real cluster in tests/cluster/run_slurm.sh; these tests
pin the parsing, including the forms newer SLURM versions print.
"""

from tiledup.run.slurm import Node, _job_ask, _sbatch_ask, explain_rejected, records, unfit

NODE = ("NodeName=vm Arch=x86_64 CoresPerSocket=1  CPUAlloc=1 CPUEfctv=2 CPUTot=2 CPULoad=10.25 "
        "Gres=gpu:1 NodeAddr=vm NodeHostName=vm Version=22.05.8 OS=Linux 6.18.44 #1 SMP  "
        "RealMemory=23593 AllocMem=100 FreeMem=10251 Sockets=2 Boards=1 State=MIXED Partitions=test  "
        "CfgTRES=cpu=2,mem=23593M,billing=2")
PARTITION = ("PartitionName=test AllowGroups=ALL Default=YES MaxNodes=UNLIMITED MaxTime=UNLIMITED "
             "MaxCPUsPerNode=UNLIMITED Nodes=vm State=UP TotalCPUs=2 TotalNodes=1 MaxMemPerNode=UNLIMITED")
PENDING = ("JobId=11 JobName=wrap UserId=root(0) JobState=PENDING Reason=PartitionConfig Dependency=(null) "
           "Partition=test NumNodes=1 NumCPUs=4 NumTasks=1 CPUs/Task=4 TRES=cpu=4,mem=3000M,node=1,billing=4 "
           "MinCPUsNode=4 MinMemoryNode=3000M WorkDir=/tmp/cl Comment=rule_x_wildcards_a=1  "
           "StdOut=/w/.snakemake/slurm_logs/rule_x/a=1/11.log TresPerJob=gres:gpu:1")
REFUSED = """[Wed Nov 25 13:37:29 2026]
Error in rule a:
    message: SLURM sbatch failed. The error message was 'sbatch: error: Memory specification can not be satisfied
sbatch: error: Batch job submission failed: Requested node configuration is not available'.
    sbatch call:
        sbatch --parsable --job-name 962ceb10 --output /w/.snakemake/slurm_logs/rule_a/%j.log --export=ALL --comment rule_a   -p test -t 5 --mem 999999 --ntasks=1 --cpus-per-task=1 -D /w --wrap="python3 -m snakemake --target-jobs 'a:' --cores 'all'"
    jobid: 0
"""


def cluster(**partition):
    part = records(PARTITION)[0] | partition
    return [Node(records(NODE)[0], part)]


def test_a_pending_job_asking_more_cpus_than_the_node_is_named_with_request_and_node():
    job = records(PENDING)[0]
    ask = _job_ask(job)
    assert ask == {"cpus": 4, "mem_mb": 3000, "gpus": 1, "gpu_type": None, "partitions": ["test"]}
    msg = unfit("rule x (a=1) (SLURM job 11)", ask, cluster())
    assert msg.startswith("rule x (a=1) (SLURM job 11) can never start: it asks for 4 CPUs, 3000 MB and 1 GPU "
                          "on one node of partition test")
    assert "(vm: 2 CPUs, 23593 MB and 1 GPU)" in msg


def test_what_fits_a_node_is_left_alone():
    ask = {"cpus": 2, "mem_mb": 23593, "gpus": 1, "gpu_type": None, "partitions": ["test"]}
    assert unfit("rule x", ask, cluster()) is None
    assert unfit("rule x", dict(ask, mem_mb=23594), cluster()) is not None
    assert unfit("rule x", dict(ask, gpus=2), cluster()) is not None
    assert unfit("rule x", dict(ask, partitions=[]), cluster()) is None  # the default partition
    assert unfit("rule x", dict(ask, partitions=["other"]), cluster()) is None  # unknown nodes: no verdict


def test_partition_caps_and_other_record_forms():
    ask = {"cpus": 2, "mem_mb": 100, "gpus": 0, "gpu_type": None, "partitions": ["test"]}
    assert unfit("rule x", ask, cluster(MaxCPUsPerNode="1")) is not None
    assert unfit("rule x", dict(ask, cpus=1, mem_mb=9000), cluster(MaxMemPerNode="8G")) is not None
    # per-CPU memory, newer TRES spelling, typed GPUs
    job = records("JobId=5 JobState=PENDING Partition=a,b NumCPUs=3 NumTasks=1 MinMemoryCPU=1G "
                  "TresPerNode=gres/gpu:a100:2")[0]
    assert _job_ask(job) == {"cpus": 3, "mem_mb": 3072, "gpus": 2, "gpu_type": "a100", "partitions": ["a", "b"]}
    node = Node(records("NodeName=g1 CPUTot=64 RealMemory=512000 Gres=gpu:a100:4(S:0-1),gpu:v100:2 "
                        "Partitions=a")[0], {"PartitionName": "a"})
    assert node.gpus == 6 and node.holds(_job_ask(job))
    assert not node.holds(dict(_job_ask(job), gpus=5))  # 6 GPUs, but 4 of them a100


def test_a_refused_submission_is_explained_from_the_snakemake_log(tmp_path):
    name, ask = _sbatch_ask(REFUSED.split("sbatch call:\n")[1].strip().splitlines()[0])
    assert name == "rule a"
    assert ask == {"cpus": 1, "mem_mb": 999999, "gpus": 0, "gpu_type": None, "partitions": ["test"]}
    log = tmp_path / "run.snakemake.log"
    log.write_text(REFUSED)
    said = []
    assert explain_rejected([str(log)], said.append, cluster()) == said
    assert said == ["rule a was refused by sbatch: it asks for 1 CPU, 999999 MB and no GPU on one node "
                    "of partition test, and no node there has that much (vm: 2 CPUs, 23593 MB and 1 GPU). "
                    "Lower its threads (--cores, --set-threads), mem_mb or gpu (--set-resources), or give "
                    "it a larger partition (slurm_partition)."]
    assert explain_rejected(str(tmp_path / "missing.log"), said.append, cluster()) == []
