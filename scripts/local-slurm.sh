#!/usr/bin/env bash
# local-slurm.sh start|stop|status DIR: a real single-node Slurm cluster from Debian's packages
# (slurmctld, slurmd, slurm-client, munge: Slurm 22.05 on bookworm), for tests and for trying
# Slurm features on one machine.
#
# Everything lives under DIR: slurm.conf, gres.conf, the controller's state, slurmd's spool,
# logs (log/), pid files (pids/ holds the script's own record), and a munge daemon of its own
# (key, socket, seed under munge/), so it never touches a system munge or a real cluster on
# the machine, and two clusters in two folders do not interfere (each picks two free TCP ports
# at every start). The state is kept per DIR: job ids go on where they were.
#
#   start   installs the missing packages when run as root (says which are needed otherwise),
#           writes the configuration, starts munged, slurmctld and slurmd as the invoking user
#           (root in the usual case: SlurmUser=root; another user's cluster runs only that
#           user's jobs), and returns once the node is idle and a trivial srun job has
#           finished (deadline LOCAL_SLURM_TIMEOUT seconds, default 60). Prints on stdout, and
#           only there, `export SLURM_CONF=DIR/slurm.conf` (also written to DIR/env), so
#           `eval "$(scripts/local-slurm.sh start DIR)"` works. On a running cluster it says so
#           and succeeds. Jobs still active in the state of a cluster that died without `stop`
#           are cancelled. A failed start prints the tail of the daemon logs and stops what it
#           started (exit 1).
#   stop    cancels the cluster's jobs, then ends exactly the daemons it recorded (by pid,
#           checked against their command line; TERM, then KILL past a deadline) and any job
#           step (slurmstepd and the processes below it) they left; waits until all are gone.
#           Idempotent (exit 0).
#   status  sinfo and squeue of the cluster (exit 0), or "not running" (exit 3).
# Bad usage: one line on stderr, exit 2. LOCAL_SLURM_DEBUG=debug2 (say) sets the daemons' log
# level (default info).
#
# Only the client commands need SLURM_CONF; the daemons are started with -f DIR/slurm.conf.
# Jobs that ask for --gres=gpu:1 get CUDA_VISIBLE_DEVICES=0 (a fake GPU: gres.conf names
# /dev/null). There is no slurmdbd, so no sacct: a finished job stays visible to
# `scontrol show job` for MinJobAge (an hour). A requeued batch job waits about 120 s before
# it may start again unless `scontrol update JobId=N StartTime=now`: once it is PENDING with
# that hold in its EligibleTime (an update before is overwritten), and in a later second than
# the requeue (slurmd revokes the old credential to the second: a start in that same second
# fails with "Job credential revoked").
set -euo pipefail

main() {
local prog=local-slurm.sh
usage() { echo "usage: $prog start|stop|status DIR" >&2; exit 2; }
[[ $# -eq 2 && -n $2 ]] || usage
local action=$1 dir_arg=$2
case $action in start|stop|status) ;; *) usage ;; esac

say() { echo "local-slurm: $*" >&2; }
die() { echo "local-slurm: $*" >&2; exit 1; }

PATH=/usr/sbin:/sbin:$PATH
# A caller inside a Slurm job (or another cluster's shell) must not steer this cluster's
# clients: srun inside a job would start a step of that job instead of a job here.
local var
for var in $(compgen -e); do [[ $var == SLURM_* ]] && unset "$var"; done

# -- the folder ------------------------------------------------------------------------------
local DIR
if [[ $action == start ]]; then
    mkdir -p -- "$dir_arg" || die "cannot create $dir_arg"
fi
if [[ ! -d $dir_arg ]]; then   # nothing was ever started there
    if [[ $action == status ]]; then echo "not running"; exit 3; fi
    say "not running (no folder $dir_arg)"
    exit 0
fi
DIR=$(cd -- "$dir_arg" && pwd -P)
[[ $DIR != *[[:space:]=,\"\']* ]] || die "the folder's path must not hold spaces, '=', ',' or quotes: $DIR"

local CONF=$DIR/slurm.conf PIDS=$DIR/pids LOGS=$DIR/log MUNGE=$DIR/munge
local SOCKET=$MUNGE/munge.socket MARK="LOCAL_SLURM_DIR=$DIR"
local DAEMONS=(munged slurmctld slurmd)
export SLURM_CONF=$CONF

# -- processes ---------------------------------------------------------------------------------
# A pid is this cluster's daemon when it runs (not a zombie) and its command line is the one
# this script gave it (this folder's slurm.conf, or munge socket): a recycled pid is never
# signalled.
alive() {
    local stat
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != [ZX] ]]
}
ours() {  # ours PID NAME
    local args=() i
    alive "$1" || return 1
    mapfile -d '' -t args 2>/dev/null <"/proc/$1/cmdline" || return 1
    ((${#args[@]})) && [[ ${args[0]##*/} == "$2" ]] || return 1
    for ((i = 1; i < ${#args[@]}; i++)); do
        [[ ${args[i]} == "--socket=$SOCKET" && $2 == munged ]] && return 0
        [[ ${args[i]} == -f && ${args[i + 1]:-} == "$CONF" && $2 != munged ]] && return 0
    done
    return 1
}
recorded() {  # recorded NAME: the pid written at start, if it is still that daemon
    local pid
    [[ -s $PIDS/$1 ]] || return 1
    pid=$(<"$PIDS/$1")
    [[ $pid =~ ^[0-9]+$ ]] && ours "$pid" "$1" && echo "$pid"
}
# This cluster's processes: its daemons and their forks carry MARK in their environment;
# the slurmstepd of each job step (which blanks its environment when it renames itself) holds
# this cluster's slurmd log open. The job processes below them are found by descendants.
marked() {
    local f p
    while read -r f; do
        p=${f#/proc/}; p=${p%/environ}
        alive "$p" && echo "$p"
    done < <(grep -lzxF -- "$MARK" /proc/[0-9]*/environ 2>/dev/null)
    steps
}
steps() {  # the running slurmstepd of this cluster
    local f p fd first
    for f in /proc/[0-9]*/cmdline; do
        first=
        read -r -d '' first 2>/dev/null <"$f" || [[ -n $first ]] || continue
        [[ $first == slurmstepd* || $first == */slurmstepd ]] || continue
        p=${f#/proc/}; p=${p%/cmdline}
        for fd in /proc/"$p"/fd/*; do
            if [[ $(readlink "$fd" 2>/dev/null) == "$LOGS/slurmd.log" ]]; then
                alive "$p" && echo "$p"
                break
            fi
        done
    done
    return 0
}
descendants() {  # descendants PID...: every process below them
    local -A children=()
    local stat pid ppid rest
    for stat in /proc/[0-9]*/stat; do
        read -r rest 2>/dev/null <"$stat" || continue
        pid=${rest%% *}; rest=${rest##*) }; rest=${rest#* }; ppid=${rest%% *}
        children[$ppid]+=" $pid"
    done
    local queue=("$@") p c
    while ((${#queue[@]})); do
        p=${queue[0]}; queue=("${queue[@]:1}")
        for c in ${children[$p]:-}; do echo "$c"; queue+=("$c"); done
    done
}
wait_gone() {  # wait_gone SECONDS PID...: 0 once none is alive
    local deadline=$((SECONDS + $1)) p left; shift
    while :; do
        left=0
        for p in "$@"; do alive "$p" && left=1; done
        ((left)) || return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}
running_daemons() {  # the names of the recorded daemons still running
    local name
    for name in "${DAEMONS[@]}"; do recorded "$name" >/dev/null && echo "$name"; done
    return 0
}
client() { timeout "${2:-10}" "$1" "${@:3}"; }  # client CMD SECONDS ARGS...: never hangs

# -- stop ---------------------------------------------------------------------------------------
stop_cluster() {  # stop_cluster [GRACE]: seconds a daemon has to end after TERM (default 15)
    local grace=${1:-15} name pid pids=() ids strays=()
    if recorded slurmctld >/dev/null && recorded munged >/dev/null && [[ -f $CONF ]]; then
        ids=$(client squeue 5 -h -o %A 2>/dev/null | sort -u | tr '\n' ' ') || ids=
        ids=${ids% }
        if [[ -n $ids ]]; then
            say "cancelling jobs $ids"
            # shellcheck disable=SC2086
            client scancel 5 $ids 2>/dev/null || true
            # until their steps are gone and the controller has heard the last of them (KillWait
            # is 2 s): a daemon stopped while they still talk waits out MessageTimeout (10 s)
            local deadline=$((SECONDS + 15))
            while [[ -n $(steps) || -n $(client squeue 5 -h -o %A 2>/dev/null) ]] && ((SECONDS < deadline)); do
                sleep 0.1
            done
        fi
    fi
    # one after the other: the controller first (stopped while slurmd still answers it, it
    # does not wait out MessageTimeout on its messages to the node), munged last
    for name in slurmctld slurmd munged; do
        pid=$(recorded "$name") || continue
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
        if ! wait_gone "$grace" "$pid"; then
            say "$name (pid $pid) still running $grace s after TERM: KILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone 5 "$pid" || die "$name (pid $pid) still running after KILL"
        fi
    done
    # job steps whose slurmd is gone, and the job processes below them
    mapfile -t strays < <(marked)
    if ((${#strays[@]})); then
        mapfile -t -O "${#strays[@]}" strays < <(descendants "${strays[@]}")
        say "killing leftover processes ${strays[*]}"
        kill -KILL "${strays[@]}" 2>/dev/null || true
        wait_gone 5 "${strays[@]}" || die "leftover processes ${strays[*]} still running"
    fi
    rm -f "$PIDS"/slurmd "$PIDS"/slurmctld "$PIDS"/munged
    ((${#pids[@]} + ${#strays[@]}))
}

if [[ $action == stop ]]; then
    local t0=$EPOCHREALTIME
    if stop_cluster; then
        say "stopped in $(elapsed "$t0") s"
    else
        say "not running"
    fi
    exit 0
fi

if [[ $action == status ]]; then
    local up
    up=$(running_daemons | tr '\n' ' ')
    if [[ -z $up ]]; then echo "not running"; exit 3; fi
    if [[ $up != "munged slurmctld slurmd " ]]; then echo "partly running: ${up% }"; fi
    echo "export SLURM_CONF=$CONF"
    client sinfo 10 || true
    client squeue 10 || true
    exit 0
fi

# -- start ----------------------------------------------------------------------------------------
local t0=$EPOCHREALTIME timeout=${LOCAL_SLURM_TIMEOUT:-60}
[[ $timeout =~ ^[0-9]+$ ]] || die "LOCAL_SLURM_TIMEOUT: whole seconds, not '$timeout'"
local up
up=$(running_daemons | tr '\n' ' ')
if [[ $up == "munged slurmctld slurmd " ]]; then
    say "already running in $DIR"
    echo "export SLURM_CONF=$CONF"
    exit 0
elif [[ -n $up ]]; then
    say "partly running (${up% }): stopping it first"
    stop_cluster || true
fi

# the packages
local need=() cmd pkg
for cmd in munged:munge munge:munge slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client \
        srun:slurm-client; do
    pkg=${cmd#*:}
    command -v "${cmd%%:*}" >/dev/null || [[ " ${need[*]} " == *" $pkg "* ]] || need+=("$pkg")
done
if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        die "needs the Debian packages ${need[*]} and is not root: run it as root once (it installs them), or: sudo apt-get install --no-install-recommends ${need[*]}"
    fi
    say "installing ${need[*]} from Debian"
    local apt=(apt-get install -y -q --no-install-recommends "${need[@]}")
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" >"$DIR/apt.log" 2>&1; then
        # a fresh machine has no package lists yet
        apt-get update -q >>"$DIR/apt.log" 2>&1 || { tail -n 20 "$DIR/apt.log" >&2; die "apt-get update failed"; }
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" >>"$DIR/apt.log" 2>&1 \
            || { tail -n 20 "$DIR/apt.log" >&2; die "apt-get install ${need[*]} failed (log: $DIR/apt.log)"; }
    fi
fi

# the machine
local node cpus mem user
node=$(hostname -s 2>/dev/null || uname -n)
node=${node%%.*}
cpus=$(nproc)
mem=$(awk '/^MemTotal:/ { m = int($2 / 1024 / 2); print (m > 64000 ? 64000 : m) }' /proc/meminfo)
user=$(id -un)
# unix sockets (munge's; slurmd's spool/NODE_JOB.STEP) hold at most 107 bytes of path
((${#DIR} + ${#node} + 30 <= 107)) || die "the folder's path is too long for unix sockets (${#DIR} characters): use a shorter one"

# two free TCP ports, below the ephemeral range, for this cluster alone
free_ports() {
    local -A used=()
    local f line port
    for f in /proc/net/tcp /proc/net/tcp6; do
        [[ -r $f ]] || continue
        while read -r _ line _; do
            port=${line##*:}
            [[ $port =~ ^[0-9A-F]{4}$ ]] && used[$((16#$port))]=1
        done <"$f"
    done
    local picked=() tries=0
    while ((${#picked[@]} < 2 && tries < 1000)); do
        tries=$((tries + 1))
        port=$((10000 + (RANDOM * 32768 + RANDOM) % 22000))
        [[ -z ${used[$port]:-} ]] || continue
        used[$port]=1
        picked+=("$port")
    done
    echo "${picked[@]}"
}
local ports ctld_port slurmd_port
ports=$(free_ports)
read -r ctld_port slurmd_port <<<"$ports"
[[ -n ${slurmd_port:-} ]] || die "no free TCP port found"

mkdir -p "$DIR/state" "$DIR/spool" "$LOGS" "$PIDS" "$DIR/run" "$MUNGE"
# munged wants its socket folder open to all (the key itself is 0600)
chmod 755 "$MUNGE"
chmod 700 "$DIR/state" "$DIR/spool"
rm -f "$PIDS"/slurmd "$PIDS"/slurmctld "$PIDS"/munged

cat >"$DIR/gres.conf" <<EOF
# a fake GPU: jobs asking --gres=gpu:1 get CUDA_VISIBLE_DEVICES=0
Name=gpu File=/dev/null
EOF
cat >"$CONF.new" <<EOF
# Written by scripts/local-slurm.sh start (again at every start: the ports change).
ClusterName=localslurm
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=${LOCAL_SLURM_DEBUG:-info}
SlurmdDebug=${LOCAL_SLURM_DEBUG:-info}
# no cgroups: processes are tracked by parent pid, tasks are not confined
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
# a batch job is scheduled when it is submitted, not up to 3 s later
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# the node as configured here, even where the hardware reports otherwise
SlurmdParameters=config_overrides
ReturnToService=2
# finished jobs stay visible to scontrol for an hour (there is no sacct without slurmdbd)
MinJobAge=3600
# cancels and time limits act within seconds
KillWait=2
InactiveLimit=0
GresTypes=gpu
NodeName=$node NodeHostname=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
mv "$CONF.new" "$CONF"
echo "export SLURM_CONF=$CONF" >"$DIR/env"

# -- the daemons: slurmctld and slurmd in the foreground (-D), in a session of their own, so
# that $! is the daemon's pid
launch() {  # launch NAME ARGS...
    local name=$1; shift
    LOCAL_SLURM_DIR=$DIR setsid "$name" "$@" </dev/null >>"$LOGS/$name.out" 2>&1 &
    echo $! >"$PIDS/$name"
}
started_ok() {  # the daemons just launched still run (their pids: just written, not recycled)
    local name
    for name in "$@"; do alive "$(<"$PIDS/$name")" || { say "$name exited"; return 1; }; done
}
fail() {
    say "start failed: $*"
    local f
    for f in "$LOGS"/munged.log "$LOGS"/slurmctld.log "$LOGS"/slurmd.log "$LOGS"/*.out; do
        [[ -s $f ]] || continue
        echo "---- tail of $f" >&2
        tail -n 25 "$f" >&2
    done
    say "stopping what was started"
    # a daemon still starting can take MessageTimeout (10 s) to heed TERM (slurmd registering
    # with a controller that is gone); nothing of a failed start is worth the wait
    stop_cluster 2 || true
    exit 1
}
local deadline=$((SECONDS + timeout))
in_time() { ((SECONDS < deadline)); }

[[ -s $MUNGE/munge.key ]] || mungekey --create --keyfile="$MUNGE/munge.key" >/dev/null 2>&1 \
    || dd if=/dev/urandom of="$MUNGE/munge.key" bs=1024 count=1 status=none
chmod 600 "$MUNGE/munge.key"
rm -f "$SOCKET" "$SOCKET.lock"
# munged wants every folder above its socket open to all (other users' clients must reach
# it); a DIR inside a private folder (pytest's tmp folders are 0700) needs --force, and then
# only those who can enter DIR reach the socket, which is all this cluster needs.
local force=() d=$MUNGE perm
while [[ $d != / ]]; do
    d=$(dirname "$d")
    perm=$(stat -c %a "$d")
    (( ${perm: -1} & 1 )) || { force=(--force); break; }
done
# munged daemonizes once its socket is ready (and fails when it cannot be); its pid file
# is the record
rm -f "$DIR/run/munged.pid"
LOCAL_SLURM_DIR=$DIR munged "${force[@]}" --socket="$SOCKET" --key-file="$MUNGE/munge.key" \
        --pid-file="$DIR/run/munged.pid" --log-file="$LOGS/munged.log" --seed-file="$MUNGE/munge.seed" \
        </dev/null >>"$LOGS/munged.out" 2>&1 \
    || fail "munged did not start"
local pid
pid=$(cat "$DIR/run/munged.pid" 2>/dev/null) || pid=
{ [[ $pid =~ ^[0-9]+$ ]] && ours "$pid" munged; } || fail "munged wrote no pid file"
echo "$pid" >"$PIDS/munged"
until [[ -S $SOCKET ]] && munge -n -S "$SOCKET" 2>/dev/null | unmunge -S "$SOCKET" >/dev/null 2>&1; do
    { started_ok munged && in_time; } || fail "munged did not answer on $SOCKET"
    sleep 0.05
done

launch slurmctld -D -f "$CONF"
launch slurmd -D -f "$CONF" -N "$node"
# Jobs still active in the recovered state are left from a cluster that was not stopped by
# `stop` (which cancels every job): a daemon killed, the machine rebooted. Their processes are
# gone; cancel them (an srun allocation among them would otherwise hold its CPUs for good, as
# InactiveLimit=0).
local state='' stale='' cleaned=0
until [[ $state == idle ]]; do
    { started_ok munged slurmctld slurmd && in_time; } || fail "the node did not become idle (state: ${state:-no answer})"
    sleep 0.1
    if ((!cleaned)) && stale=$(client squeue 5 -h -o %A 2>/dev/null); then
        cleaned=1
        stale=$(echo "$stale" | tr '\n' ' ')
        stale=${stale% }
        if [[ -n $stale ]]; then
            say "cancelling jobs $stale left from a cluster that was not stopped"
            # shellcheck disable=SC2086
            client scancel 5 $stale 2>/dev/null || true
        fi
    fi
    # scontrol, not sinfo: after such a cancel sinfo went on showing the node "mixed" (the old
    # jobs' CPUs allocated) until something asked for the node's details, as scontrol does
    state=$(client scontrol 5 show node "$node" -o 2>/dev/null | grep -o ' State=[^ ]*') || state=
    state=${state# State=}
    state=${state,,}
done
# the cluster takes jobs: a trivial one runs to the end
local left=$((deadline - SECONDS))
((left > 0)) || left=1
client srun "$left" --quiet -N1 -n1 -t 1 -J local-slurm-probe true >"$LOGS/probe.out" 2>&1 \
    || { cat "$LOGS/probe.out" >&2; fail "the probe job (srun true) did not finish"; }

say "up in $(elapsed "$t0") s: node $node ($cpus CPUs, 1 fake GPU), partition debug, ports $ctld_port/$slurmd_port, pids $(cat "$PIDS"/munged "$PIDS"/slurmctld "$PIDS"/slurmd | tr '\n' ' ')"
echo "export SLURM_CONF=$CONF"
}

elapsed() {  # seconds since an $EPOCHREALTIME, to 0.01
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'
}

main "$@"
