#!/usr/bin/env bash
# The tiny demo workflow end to end on a real single-node SLURM cluster, through
# profiles/slurm and snakemake-executor-plugin-slurm (Debian, run as root).
#
#   bash tests/cluster/run_slurm.sh            # every case, target `all`
#   TARGET=tiles bash tests/cluster/run_slurm.sh
#   CASES="unfit run" ...                      # some of the cases: unfit run stop
#   KEEP_WORK=1 ...                          # keep the scratch folder even on PASS
#
# Installs slurmctld, slurmd, slurm-client and munge from Debian if missing; writes a
# single-node /etc/slurm/slurm.conf with free ports, state under a temp dir and a fake
# GPU (the default path, because the plugin's jobs call `srun` with SLURM_CONF removed;
# a file already there is put back on exit); starts munged (unless one answers already),
# slurmctld and slurmd by hand (no systemd); runs the workflow in a scratch copy of the
# repository. Cases:
#   unfit  a job asking for more CPUs, memory or GPUs than the node has ends the run with
#          a message naming the rule, the request and the node (tiledup.run.slurm);
#   run    the workflow end to end as `snakemake --workflow-profile profiles/slurm` without
#          --cores; check_run.py checks that every job went through sbatch and finished in
#          SLURM, that train/verify/evaluate asked for a GPU, that shard jobs were grouped and that
#          no submission asked for more CPUs than the node has;
#   stop   a training job stopped by scancel, then by its time limit: check_stop.py finds
#          nothing of it left on the node, and a re-run resumes from the checkpoint.
# The daemons it started are stopped by PID on exit. Every step has a time limit.
# Prints one `SLURM workflow test: PASS|FAIL` line; exit status 0 only on PASS.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV_BIN=${VENV_BIN:-$REPO/.venv/bin}
TARGET=${TARGET:-all}
CASES=${CASES:-unfit run stop}
RUN_TIMEOUT=${RUN_TIMEOUT:-1200}   # seconds for the whole snakemake run (about 3 min here)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tiledup-slurm.XXXXXX")
STARTED=()          # "name:pid" of every daemon this script started, in start order
MONITOR_PID=""
SMK_BG=""           # a snakemake run in the background (stop cases)
CONF_WRITTEN=""
T0=$SECONDS
VERDICT="FAIL"

log() { echo "[run_slurm $(date +%H:%M:%S)] $*"; }
die() { log "ERROR: $*"; exit 1; }

cleanup() {
    local rc=$?
    [ -n "$MONITOR_PID" ] && kill "$MONITOR_PID" 2>/dev/null || true
    if [[ " ${STARTED[*]} " == *" slurmctld:"* ]]; then
        # The controller is ours: cancel whatever is left of the run.
        local left
        left=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
        [ -n "$left" ] && timeout 10 scancel $left 2>/dev/null || true
    fi
    if [ -n "$SMK_BG" ]; then  # a snakemake run in the background ends once its jobs are cancelled
        for _ in $(seq 120); do kill -0 "$SMK_BG" 2>/dev/null || break; sleep 1; done
    fi
    local i entry name pid
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        entry=${STARTED[$i]}; name=${entry%%:*}; pid=${entry##*:}
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
            log "stopped $name (pid $pid)"
        fi
    done
    local f
    for f in slurm.conf gres.conf; do
        if [ -e "$WORK/etc-backup/$f" ]; then mv -f "$WORK/etc-backup/$f" "/etc/slurm/$f"
        elif [ -n "$CONF_WRITTEN" ]; then rm -f "/etc/slurm/$f"; fi
    done
    if [ "$rc" -eq 0 ] && [ "$VERDICT" = PASS ]; then
        if [ -n "${KEEP_WORK:-}" ]; then log "files kept in $WORK"; else rm -rf "$WORK"; fi
        echo "SLURM workflow test: PASS (target $TARGET, $((SECONDS - T0)) s)"
    else
        for f in "$WORK"/slurm/log/*.log "$WORK"/snakemake.out \
            $(find "$WORK/repo/.snakemake/slurm_logs" -name '*.log' 2>/dev/null | tail -n 3); do
            [ -f "$f" ] && { echo "---- tail of $f"; tail -n 40 "$f"; }
        done
        echo "SLURM workflow test: FAIL (target $TARGET, $((SECONDS - T0)) s; files kept in $WORK)"
        [ "$rc" -eq 0 ] && rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll once a second until COMMAND succeeds
    local limit=$1 what=$2; shift 2
    for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
    die "timed out after ${limit} s waiting for $what"
}

# ---- 1. SLURM and munge from Debian's packages (skipped when already installed)
[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, starts slurmd)"
[ -x "$VENV_BIN/snakemake" ] || die "no snakemake in $VENV_BIN (run \`make install\` first)"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "SLURM is not installed and there is no apt-get"
    log "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq || die "apt-get update failed"
    timeout 900 apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >"$WORK/apt.log" 2>&1 \
        || { tail -n 20 "$WORK/apt.log"; die "apt-get install failed"; }
fi
log "SLURM $(dpkg-query -W -f '${Version}' slurm-client 2>/dev/null || echo '(version unknown)')"

# ---- 2. munge: reuse a running munged, else start one (key created if missing)
if timeout 5 bash -c 'munge -n | unmunge' >/dev/null 2>&1; then
    log "munged already running: reusing it"
else
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    setpriv --reuid=munge --regid=munge --init-groups munged --foreground \
        >"$WORK/munged.out" 2>&1 &
    STARTED+=("munged:$!")
    log "started munged (pid ${STARTED[-1]#*:})"
    wait_for 15 "munged" timeout 5 bash -c 'munge -n | unmunge'
fi

# ---- 3. A private single-node cluster: this host, its CPUs, a fake GPU
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024) - 512}' /proc/meminfo)
# The node must offer the largest mem_mb the profile asks for, or sbatch rejects those
# jobs; on a smaller machine the node advertises that much (the tiny run uses far less).
NEED_MB=$("$VENV_BIN/python" - "$REPO/profiles/slurm/config.yaml" <<'EOF'
import sys, yaml
p = yaml.safe_load(open(sys.argv[1]))
mems = [p.get("default-resources", {}).get("mem_mb", 0)]
mems += [r.get("mem_mb", 0) for r in (p.get("set-resources") or {}).values()]
print(max(int(m) for m in mems))
EOF
)
[ "$MEM_MB" -lt "$NEED_MB" ] && MEM_MB=$NEED_MB
read -r CTLD_PORT SLURMD_PORT < <("$VENV_BIN/python" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)
if [ -e /etc/slurm/slurm.conf ] && timeout 10 scontrol ping 2>/dev/null | grep -q UP; then
    die "a SLURM controller configured in /etc/slurm/slurm.conf is running; not touching it"
fi
S="$WORK/slurm"
mkdir -p "$S/state" "$S/spool" "$S/log" "$WORK/etc-backup" /etc/slurm
for f in slurm.conf gres.conf; do
    [ -e "/etc/slurm/$f" ] && mv "/etc/slurm/$f" "$WORK/etc-backup/$f"
done
CONF_WRITTEN=1
cat >/etc/slurm/slurm.conf <<EOF
# Written by tiledup's tests/cluster/run_slurm.sh for one test run (removed on exit):
# one node, no accounting, no cgroups.
ClusterName=tiledup-test
SlurmctldHost=$NODE
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Finished jobs stay visible to squeue/scontrol for 10 min (the plugin's status checks).
MinJobAge=600
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=test Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
echo "Name=gpu File=/dev/null" >/etc/slurm/gres.conf
unset SLURM_CONF

slurmctld -D >"$S/log/slurmctld.out" 2>&1 &
STARTED+=("slurmctld:$!")
wait_for 30 "slurmctld" timeout 10 scontrol ping
slurmd -D >"$S/log/slurmd.out" 2>&1 &
STARTED+=("slurmd:$!")
node_idle() { [ "$(timeout 10 sinfo -h -N -n "$NODE" -o %t)" = idle ]; }
wait_for 60 "node $NODE to be idle (sinfo)" node_idle
log "cluster up: node $NODE, $CPUS CPUs, ${MEM_MB} MB, gpu:1 (ports $CTLD_PORT/$SLURMD_PORT)"

# ---- 4. Scratch copies of the repository's workflow; every run through profiles/slurm
export PATH="$VENV_BIN:$PATH"   # sbatch --export=ALL hands it to the jobs (tiledup CLI)
scratch() {  # scratch DIR: a copy of the workflow files (results land there)
    mkdir -p "$1/tests/cluster"
    cp "$REPO/Snakefile" "$1/"
    cp -r "$REPO/workflow" "$REPO/config" "$REPO/profiles" "$REPO/envs" "$1/"
    cp "$REPO/tests/cluster/tiny.yaml" "$1/tests/cluster/"
}
# smk LIMIT OUT TARGET ARGS...: snakemake in the current folder as the issue's user ran it:
# --workflow-profile profiles/slurm and no --cores, so nothing but the profile caps a
# grouped submission; squeue because there is no accounting database for sacct; logs of
# successful jobs kept for the checks. Sets SMK_RC (124: over the time limit) and
# SMK_SECONDS. SIGINT is reset to its default, as in a terminal (a background job of a
# script would ignore it). Snakemake takes SIGTERM as "finish the running jobs", which
# never happens for a job that never starts: SIGKILL 30 s later.
smk() {
    local limit=$1 out=$2 target=$3 t0=$SECONDS; shift 3
    set +e
    timeout -k 30 "$limit" "$VENV_BIN/python" -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
        snakemake "$target" --workflow-profile profiles/slurm \
        --configfile config/config.yaml tests/cluster/tiny.yaml "${EXTRA_CONFIG[@]}" \
        --latency-wait 10 --slurm-status-command squeue \
        --slurm-init-seconds-before-status-checks 2 --slurm-keep-successful-logs --verbose \
        "$@" >"$out" 2>&1
    SMK_RC=$?
    set -e
    [ "$SMK_RC" -eq 137 ] && SMK_RC=124
    SMK_SECONDS=$((SECONDS - t0))
    timeout 10 scontrol show job --oneliner >>"$WORK/jobs.snap" 2>/dev/null || true
}
EXTRA_CONFIG=()
nothing_queued() {  # no job of this test is pending or running any more
    [ -z "$(timeout 10 squeue -h -t PENDING,RUNNING,COMPLETING -o %i)" ]
}

# slurmctld forgets finished jobs after MinJobAge: snapshot them while the runs go on.
(while true; do timeout 10 scontrol show job --oneliner >>"$WORK/jobs.snap" 2>/dev/null; sleep 3; done) &
MONITOR_PID=$!

# ---- 5. Jobs no node can run end the run with a message naming rule, request and node
# (CPUs: SLURM keeps the job pending, tiledup.run.slurm cancels it; memory, GPUs: sbatch
# refuses them). `demo` is the first job of a fresh run.
UNFIT="$WORK/unfit"
scratch "$UNFIT"
cd "$UNFIT"
UNFIT_LIMIT=${UNFIT_LIMIT:-180}
if [[ " $CASES " == *" unfit "* ]]; then
    for case in "cpus|--set-threads demo=$((CPUS + 1))|$((CPUS + 1)) CPUs|can never start" \
                "memory|--set-resources demo:mem_mb=$((MEM_MB + 1000))|$((MEM_MB + 1000)) MB|was refused by sbatch" \
                "gpus|--set-resources demo:gpu=2|2 GPUs|was refused by sbatch"; do
        IFS='|' read -r what opt ask verdict <<<"$case"
        log "unschedulable $what ($opt): the run must end within ${UNFIT_LIMIT} s"
        # shellcheck disable=SC2086  # $opt is two words
        smk "$UNFIT_LIMIT" "$WORK/unfit-$what.out" demo $opt
        [ "$SMK_RC" -eq 124 ] && die "asking for $ask: snakemake still waiting after ${UNFIT_LIMIT} s"
        [ "$SMK_RC" -ne 0 ] || die "asking for $ask: snakemake succeeded?"
        grep -q "rule demo.* $verdict: it asks for .*$ask.* no node there has that much ($NODE: $CPUS CPUs, $MEM_MB MB and 1 GPU)" \
            "$WORK/unfit-$what.out" || die "asking for $ask: no message naming rule, request and node"
        wait_for 30 "the queue to be empty after the $what case" nothing_queued
        log "  ended after ${SMK_SECONDS} s: $(grep -o "rule demo.* $verdict: it asks for [^(]*" "$WORK/unfit-$what.out" | head -1)"
    done
fi

# ---- 6. The workflow end to end: every job through sbatch, groups within one node
RUN="$WORK/repo"
scratch "$RUN"
cd "$RUN"
[[ " $CASES " == *" run "* ]] || { VERDICT=PASS; exit 0; }
log "running snakemake --workflow-profile profiles/slurm $TARGET (limit ${RUN_TIMEOUT} s)"
# train/evaluate ask for 8 / 4 CPUs in the profile: this node has $CPUS.
smk "$RUN_TIMEOUT" "$WORK/snakemake.out" "$TARGET" --set-threads train="$CPUS" evaluate="$CPUS"
[ "$SMK_RC" -eq 124 ] && die "snakemake did not finish within ${RUN_TIMEOUT} s"
[ "$SMK_RC" -eq 0 ] || die "snakemake failed (exit $SMK_RC)"

timeout 300 snakemake --configfile config/config.yaml tests/cluster/tiny.yaml --summary "$TARGET" \
    >"$WORK/summary.tsv" 2>"$WORK/summary.err" || die "snakemake --summary failed"
awk -F'\t' 'NR > 1 && $5 != "ok" {bad = 1; print "output not ok: " $1 " (" $5 ")"}
             NR > 1 {n++} END {exit bad || !n}' "$WORK/summary.tsv" \
    || die "outputs missing or incomplete after the run"
log "all $(($(wc -l <"$WORK/summary.tsv") - 1)) outputs of $TARGET present (${SMK_SECONDS} s)"
GPU_RULES=()   # the GPU rules are part of `all` only
[ "$TARGET" = all ] && GPU_RULES=(train verify evaluate)
timeout 120 "$VENV_BIN/python" "$REPO/tests/cluster/check_run.py" \
    --snakemake-log "$WORK/snakemake.out" --jobs "$WORK/jobs.snap" \
    --workdir "$RUN" --node-cpus "$CPUS" --gpu-rules "${GPU_RULES[@]}" \
    || die "checks of the SLURM run failed"

# ---- 7. A training job stopped by scancel, then by its time limit, leaves nothing
# running on the node, and a re-run resumes from its checkpoint.
if [ "$TARGET" = all ] && [[ " $CASES " == *" stop "* ]]; then
    # extends the run far beyond the 1-minute time limit (a tiny epoch takes about a second)
    printf 'train:\n  epochs: 5000\n  early_stop: 0\n' >"$WORK/longer.yaml"
    for how in scancel timeout; do
        opts=(--set-threads train="$CPUS")
        [ "$how" = timeout ] && opts+=(--set-resources train:runtime=1)
        log "stopping a training job by $how"
        EXTRA_CONFIG=("$WORK/longer.yaml")
        smk 400 "$WORK/stop-$how.out" train "${opts[@]}" &
        SMK_BG=$!
        timeout 400 "$VENV_BIN/python" "$REPO/tests/cluster/check_stop.py" --how "$how" \
            --snakemake-log "$WORK/stop-$how.out" || die "training stopped by $how left processes"
        wait "$SMK_BG" || true
        SMK_BG=""
        EXTRA_CONFIG=()
        grep -q "tiledup train stopped by SIGTERM" results/logs/train.log \
            || die "after $how: train.log does not say it stopped on SIGTERM"
        wait_for 30 "the queue to be empty after $how" nothing_queued
        smk 400 "$WORK/resume-$how.out" train --set-threads train="$CPUS"
        [ "$SMK_RC" -eq 0 ] || die "re-run after $how failed (exit $SMK_RC)"
        # The last resume line comes after the stop (whether the log is kept or replaced).
        awk '/tiledup train stopped by/ {s = NR} /resuming from results\/model\/resume.pt after epoch/ {r = NR}
             END {exit !(r > s)}' results/logs/train.log \
            || die "re-run after $how did not resume from the checkpoint"
        log "  re-run resumed: $(grep -o 'resuming from .*' results/logs/train.log)"
    done
fi
VERDICT=PASS
