#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for trying the pipeline's SLURM profile and for the `slurm` tests.
#
#   tests/slurm/cluster.sh start     munged, slurmctld and slurmd; waits until the node is idle (at most 60 s)
#   tests/slurm/cluster.sh status    what runs, by pid; exit status 0 only when all three daemons are up
#   tests/slurm/cluster.sh stop      cancels the cluster's jobs, stops every daemon it started, by pid
#
# Needs root and Debian's packages: apt-get install slurmctld slurmd slurm-client munge (SLURM 22.05).
# Everything lives in one state directory, $MNISTBENCH_SLURM_DIR (default: ${TMPDIR:-/tmp}/mnistbench-slurm):
# the configuration, munge's key and socket, pid files, daemon logs and spool, and the job completion log
# (jobcomp.log: SLURM's record of every finished job, since this cluster has no accounting database).
# The one file written elsewhere is /etc/slurm/slurm.conf, the path where SLURM's tools look when nothing
# else tells them: jobs cannot be told through SLURM_CONF, which the Snakemake jobstep plugin removes from
# the environment of its inner srun. A slurm.conf found there is moved into the state directory on start
# and put back on stop. Controller and compute daemon share this host, with no cgroups, no systemd and no
# accounting (proctrack/linuxproc, task/none, select/cons_tres); `sacct` therefore says "Slurm accounting
# storage is disabled", and the profile asks the plugin to query job states with `squeue` instead.
set -eEuo pipefail  # -E: the ERR trap of start also fires inside functions

STATE=${MNISTBENCH_SLURM_DIR:-${TMPDIR:-/tmp}/mnistbench-slurm}
CTLD_PORT=${MNISTBENCH_SLURM_PORT:-6817}
SLURMD_PORT=$((CTLD_PORT + 1))
ETC_CONF=/etc/slurm/slurm.conf
MARKER="# Written by mnistbench tests/slurm/cluster.sh; state directory:"
IDLE_TIMEOUT=60
DAEMONS=(slurmd slurmctld munged)

say() { echo "cluster.sh: $*"; }
die() { echo "cluster.sh: $*" >&2; exit 1; }

running() {  # a process that exists and is not a zombie (an exited daemon waits to be reaped by pid 1)
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d ' ' -f 1)
    [ -n "$state" ] && [ "$state" != Z ]
}

pid_of() {  # the pid recorded for a daemon, if that process still runs
    local file="$STATE/$1.pid"
    [ -s "$file" ] || return 1
    local pid
    pid=$(cat "$file")
    running "$pid" && echo "$pid"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_requirements() {
    [ "$(id -u)" = 0 ] || die "needs root: the SLURM daemons run as root here"
    local missing=()
    for tool in munged mungekey slurmctld slurmd sinfo sbatch squeue scancel; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [ ${#missing[@]} = 0 ] || die "missing ${missing[*]}: apt-get install slurmctld slurmd slurm-client munge"
    id munge >/dev/null 2>&1 || die "no user 'munge': apt-get install munge"
}

write_conf() {
    local node_line node
    # The node as slurmd sees this machine: CPUs, sockets, cores, threads and memory.
    node_line=$(slurmd -C | head -n 1)
    node=$(hostname -s)
    node_line=${node_line/NodeName=* CPUs=/NodeName=$node NodeAddr=127.0.0.1 CPUs=}
    cat > "$STATE/slurm.conf" <<EOF
$MARKER $STATE
ClusterName=mnistbench
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
# squeue keeps finished jobs for 5 minutes: the Snakemake plugin's squeue status query needs at least three
# times its initial status interval (40 s by default), or it falls back to sacct, which has no data here.
MinJobAge=300
KillWait=5
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
$node_line State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

install_conf() {
    if [ -e "$ETC_CONF" ]; then
        if grep -q "^$MARKER" "$ETC_CONF"; then
            local other
            other=$(sed -n "s|^$MARKER ||p" "$ETC_CONF")
            if [ "$other" != "$STATE" ] && [ -s "$other/slurmctld.pid" ] && running "$(cat "$other/slurmctld.pid")"; then
                die "a cluster from $other is running; stop it first: MNISTBENCH_SLURM_DIR=$other $0 stop"
            fi
        else
            mv "$ETC_CONF" "$STATE/etc-slurm.conf.orig"
            say "moved the existing $ETC_CONF to $STATE/etc-slurm.conf.orig (put back on stop)"
        fi
    fi
    if [ ! -d /etc/slurm ]; then
        mkdir -p /etc/slurm
        touch "$STATE/etc-slurm-created"
    fi
    cp "$STATE/slurm.conf" "$ETC_CONF"
}

start_munged() {
    if ! runuser -u munge -- test -x "$STATE"; then
        echo "cluster.sh: user munge cannot enter $STATE: choose a state directory whose parents others may enter" >&2
        return 1
    fi
    mkdir -p "$STATE/munge"
    mungekey --create --keyfile="$STATE/munge/munge.key" >/dev/null
    chown -R munge:munge "$STATE/munge"
    chmod 0755 "$STATE/munge"
    chmod 0600 "$STATE/munge/munge.key"
    runuser -u munge -- munged --socket="$STATE/munge/munge.socket" --key-file="$STATE/munge/munge.key" \
        --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
        --seed-file="$STATE/munge/munged.seed" \
        || { echo "cluster.sh: munged did not start; see $STATE/munge/munged.log" >&2; return 1; }
    ln -sf munge/munged.pid "$STATE/munged.pid"
}

wait_until_idle() {
    local node state=""
    node=$(hostname -s)
    for _ in $(seq "$IDLE_TIMEOUT"); do
        state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
        [ "$state" = idle ] && return 0
        sleep 1
    done
    echo "cluster.sh: node $node is not idle after ${IDLE_TIMEOUT} s (sinfo says '${state:-nothing}');" \
         "see $STATE/log/slurmctld.log and $STATE/log/slurmd.log" >&2
    return 1
}

start() {
    check_requirements
    if [ -s "$STATE/slurmctld.pid" ] && pid_of slurmctld >/dev/null; then
        die "already running from $STATE (tests/slurm/cluster.sh stop first)"
    fi
    for port in "$CTLD_PORT" "$SLURMD_PORT"; do
        port_in_use "$port" && die "port $port is in use (another SLURM?); set MNISTBENCH_SLURM_PORT to a free port"
    done
    # A state directory left by a start that was never stopped: put back what it set aside, then start afresh.
    [ -d "$STATE" ] && stop
    rm -rf "$STATE"
    mkdir -p "$STATE/log" "$STATE/ctld" "$STATE/spool"
    chmod 0755 "$STATE"
    write_conf
    install_conf
    trap 'echo "cluster.sh: start failed; stopping what was started" >&2; stop >&2' ERR
    start_munged
    slurmctld -i || { echo "cluster.sh: slurmctld did not start; see $STATE/log/slurmctld.log" >&2; false; }
    slurmd -N "$(hostname -s)" || { echo "cluster.sh: slurmd did not start; see $STATE/log/slurmd.log" >&2; false; }
    wait_until_idle
    trap - ERR
    say "one-node cluster up: partition cpu, node $(hostname -s) ($(sinfo -h -o '%c CPUs, %m MB')); state in $STATE"
}

wait_or_kill() {  # after SIGTERM: wait up to 10 s, then SIGKILL
    local name=$1 pid=$2
    for _ in $(seq 100); do
        running "$pid" || return 0
        sleep 0.1
    done
    say "$name (pid $pid) ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

job_step_pids() {  # slurmstepd processes of this cluster: they hold a socket in its spool directory
    local proc
    for proc in /proc/[0-9]*; do
        [ "$(readlink "$proc/exe" 2>/dev/null)" = /usr/sbin/slurmstepd ] || continue
        if ls -l "$proc/fd" 2>/dev/null | grep -q -- "-> $STATE/"; then
            echo "${proc#/proc/}"
        fi
    done
}

stop() {
    trap - ERR
    if pid_of slurmctld >/dev/null; then
        scancel --full --quiet --partition=cpu 2>/dev/null || true
        for _ in $(seq 20); do
            [ -z "$(squeue -h -t RUNNING,COMPLETING,PENDING -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    local name pid
    declare -A running=()
    for name in "${DAEMONS[@]}"; do
        if pid=$(pid_of "$name"); then
            running[$name]=$pid
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in $(job_step_pids); do
        running[slurmstepd $pid]=$pid
        kill -TERM "$pid" 2>/dev/null || true
    done
    for name in "${!running[@]}"; do
        wait_or_kill "$name" "${running[$name]}"
        say "stopped $name (pid ${running[$name]})"
    done
    if [ -e "$ETC_CONF" ] && grep -q "^$MARKER $STATE\$" "$ETC_CONF"; then
        rm -f "$ETC_CONF"
    fi
    if [ -e "$STATE/etc-slurm.conf.orig" ]; then
        mv "$STATE/etc-slurm.conf.orig" "$ETC_CONF"
        say "put back the original $ETC_CONF"
    fi
    if [ -e "$STATE/etc-slurm-created" ]; then
        rmdir /etc/slurm 2>/dev/null || true
        rm -f "$STATE/etc-slurm-created"
    fi
}

status() {
    local name pid up=0
    for name in munged slurmctld slurmd; do
        if pid=$(pid_of "$name"); then
            say "$name running (pid $pid)"
            up=$((up + 1))
        else
            say "$name not running"
        fi
    done
    for pid in $(job_step_pids); do
        say "slurmstepd running (pid $pid)"
    done
    if [ "$up" = 3 ]; then
        sinfo
        return 0
    fi
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status   (state in \$MNISTBENCH_SLURM_DIR, default ${TMPDIR:-/tmp}/mnistbench-slurm)" >&2
       exit 2 ;;
esac
