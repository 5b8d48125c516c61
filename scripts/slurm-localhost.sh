#!/usr/bin/env bash
# A single-node SLURM cluster on localhost, for the SLURM tests and CI (Debian/Ubuntu, run as root, no systemd).
#
#   scripts/slurm-localhost.sh start    install slurmctld/slurmd/slurm-client/munge when missing (apt), start munged,
#                                       slurmctld and slurmd, wait until the node is idle; a no-op when already up
#   scripts/slurm-localhost.sh stop     stop the daemons that `start` started, by their PIDs
#   scripts/slurm-localhost.sh status   exit 0 when the node answers and is idle or busy
#
# State, logs and an `sacct` stand-in live in $SLURM_TMP (default /tmp/slurm). There is no accounting database, so
# the real `sacct` fails; submitit polls it to notice a job that died without writing its result (killed, OOM),
# and without an answer the sweep would wait forever. Put "$SLURM_TMP/bin" first on the PATH of the process that
# launches the sweep:  export PATH=/tmp/slurm/bin:$PATH
set -euo pipefail
S=${SLURM_TMP:-/tmp/slurm}
PIDS="$S/started.pids"  # "<name> <pid>" of each daemon this script started

say() { echo "slurm-localhost: $*" >&2; }

# the node answers (sinfo alone retries for ~9 s when no controller listens)
up() { timeout 3 sinfo -h -o %T 2>/dev/null | grep -Eqx 'idle|mixed|allocated|completing'; }

install() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null \
    && command -v munged >/dev/null && return 0
  [ "$(id -u)" = 0 ] || { say "slurm is not installed and installing it needs root"; exit 1; }
  command -v apt-get >/dev/null || { say "slurm is not installed and apt-get is missing"; exit 1; }
  local pkgs=(slurmctld slurmd slurm-client munge)
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null; } \
    || { say "apt-get install ${pkgs[*]} failed"; exit 1; }
}

write_conf() {
  local cpus hwmem mem
  cpus=$(nproc)
  hwmem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mem=$((hwmem * 9 / 10))  # a little under what slurmd detects, else the node is drained "Low RealMemory"
  mkdir -p /etc/slurm
  cat >/etc/slurm/slurm.conf <<EOF
ClusterName=localcluster
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MinJobAge=3600
KillWait=5
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

write_sacct() {
  # `sacct -o JobID,State,NodeList --parsable2 -j ID[,ID...]` answered from slurmctld's job table (kept MinJobAge s)
  cat >"$S/bin/sacct" <<'EOF'
#!/bin/bash
ids=()
while [ $# -gt 0 ]; do
  case "$1" in
    -j|--jobs) IFS=, read -ra more <<<"$2"; ids+=("${more[@]}"); shift 2 ;;
    --jobs=*)  IFS=, read -ra more <<<"${1#--jobs=}"; ids+=("${more[@]}"); shift ;;
    *) shift ;;
  esac
done
echo "JobID|State|NodeList"
for id in "${ids[@]}"; do
  scontrol -o show job "$id" 2>/dev/null | awk '{
    delete f
    for (i = 1; i <= NF; i++) { p = index($i, "="); if (p > 0) f[substr($i, 1, p - 1)] = substr($i, p + 1) }
    jid = ("ArrayTaskId" in f && "ArrayJobId" in f) ? f["ArrayJobId"] "_" f["ArrayTaskId"] : f["JobId"]
    print jid "|" f["JobState"] "|" f["NodeList"]
  }'
done
exit 0
EOF
  chmod +x "$S/bin/sacct"
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

start() {
  if up; then
    say "already running ($(sinfo -h -o '%P %T %N' | head -1))"
    return 0
  fi
  install
  mkdir -p "$S/state" "$S/spool" "$S/log" "$S/bin"
  : >"$PIDS"
  write_conf
  write_sacct
  # munge: the Debian package's postinst creates /etc/munge/munge.key
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    echo "munged $(cat /run/munge/munged.pid)" >>"$PIDS"
    munge -n | unmunge >/dev/null
  fi
  /usr/sbin/slurmctld  # daemonizes
  /usr/sbin/slurmd -N localhost  # -N: the node is called localhost whatever the hostname
  local deadline=$((SECONDS + 60))
  until up || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.5; done
  for d in slurmctld slurmd; do
    [ -s "$S/$d.pid" ] && echo "$d $(cat "$S/$d.pid")" >>"$PIDS"
  done
  if ! up; then
    sinfo || true
    tail -n 20 "$S/log/slurmctld.log" "$S/log/slurmd.log" >&2 || true
    say "the node did not become idle"
    stop
    exit 1
  fi
  say "up: $(sinfo -h -o '%P %T %N %c CPUs %m MB'); pids: $(tr '\n' ' ' <"$PIDS")"
  say "launch sweeps with PATH=$S/bin:\$PATH (sacct stand-in)"
}

stop() {
  [ -s "$PIDS" ] || { say "nothing to stop ($PIDS is empty or missing)"; return 0; }
  # slurmd first, munged last (the daemons talk through munge while shutting down)
  for name in slurmd slurmctld munged; do
    pid=$(awk -v n="$name" '$1 == n { print $2 }' "$PIDS")
    alive "$pid" || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then say "$name ($pid) still alive"; else say "stopped $name ($pid)"; fi
  done
  : >"$PIDS"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) up ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
