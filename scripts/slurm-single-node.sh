#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for decal's Slurm executor tests and CI (docs/slurm.md).
#
#   scripts/slurm-single-node.sh start    install (Debian: slurmctld slurmd slurm-client munge) when missing,
#                                         write the config, start munged, slurmctld and slurmd, wait until the
#                                         node is idle. A second start is a no-op.
#   scripts/slurm-single-node.sh stop     stop the daemons this script started (slurmd, slurmctld, munged).
#   scripts/slurm-single-node.sh status   print the node line of sinfo; exit 0 when the node is usable.
#
# It needs root and no systemd: the daemons are started directly. Everything it writes lives under
# $DECAL_SLURM_DIR (default /var/lib/decal-slurm), except /etc/slurm/slurm.conf (the path every Slurm
# command reads; a config there that this script did not write is never touched) and the munge key the
# Debian package creates. When the cluster cannot be installed or started it prints ONE line starting with
# "slurm-single-node: cannot" and exits 3 (the tests then skip with that line).
set -uo pipefail

STATE="${DECAL_SLURM_DIR:-/var/lib/decal-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# decal-test single-node cluster (written by scripts/slurm-single-node.sh)"
WAIT_S="${DECAL_SLURM_WAIT_S:-45}"

cannot() {
  echo "slurm-single-node: cannot $*" >&2
  exit 3
}

log() { echo "slurm-single-node: $*" >&2; }

pid_alive() { # pid file
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_state() {
  sinfo -h -N -n localhost -o '%t' 2>/dev/null | head -n1
}

node_usable() {
  case "$(node_state)" in
    idle | mix | alloc | comp | idle~ | mix- | alloc- | idle+ | mix+ | alloc+) return 0 ;;
    *) return 1 ;;
  esac
}

install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurmctld)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v sbatch >/dev/null || missing+=(slurm-client)
  command -v munged >/dev/null || missing+=(munge)
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null || cannot "install ${missing[*]}: no apt-get on this machine (install Slurm and munge yourself)"
  [ "$(id -u)" -eq 0 ] || cannot "install ${missing[*]}: needs root (run as root, or install them yourself)"
  log "installing ${missing[*]} with apt-get (one time)"
  local out="$STATE/log/apt.log"
  mkdir -p "$STATE/log"
  # No init system here: a policy-rc.d that refuses keeps the packages' postinst from starting daemons.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
  fi
  local rc=0
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$out" 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$out" 2>&1 \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$out" 2>&1 \
      || rc=1
  fi
  [ "$own_policy" -eq 1 ] && rm -f "$policy"
  [ "$rc" -eq 0 ] || cannot "install ${missing[*]} with apt-get: $(tail -n1 "$out") (full log: $out)"
}

start_munge() {
  local sock=/run/munge/munge.socket.2
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return 0
  fi
  id munge >/dev/null 2>&1 || cannot "start munged: the munge user does not exist (broken munge package?)"
  if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile=/etc/munge/munge.key >/dev/null 2>&1 || cannot "create /etc/munge/munge.key"
    else
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none || cannot "create /etc/munge/munge.key"
    fi
  fi
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  rm -f "$sock" "$sock.lock"
  runuser -u munge -- /usr/sbin/munged >"$STATE/log/munged.start" 2>&1 9>&- \
    || cannot "start munged: $(tail -n1 "$STATE/log/munged.start")"
  touch "$STATE/munged.ours"
  for _ in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cannot "start munged: munge -n | unmunge still fails after 5 s"
}

write_conf() {
  if [ -e "$CONF" ] && ! head -n1 "$CONF" | grep -qxF "$MARK"; then
    cannot "configure: $CONF exists and was not written by this script (a real cluster? not touching it)"
  fi
  mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$STATE/log"
  local cpus mem_mb real
  cpus="$(nproc)"
  mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
  # Leave the OS a margin: 5 % and at least 512 MB.
  local margin=$((mem_mb / 20))
  [ "$margin" -lt 512 ] && margin=512
  real=$((mem_mb - margin))
  [ "$real" -lt 256 ] && real=256
  local gres_line="" node_gres=""
  local ngpu=0
  ngpu=$(find /dev -maxdepth 1 -name 'nvidia[0-9]*' 2>/dev/null | wc -l)
  if [ "$ngpu" -gt 0 ]; then
    gres_line="GresTypes=gpu"
    node_gres="Gres=gpu:$ngpu"
    {
      echo "$MARK"
      echo "NodeName=localhost Name=gpu File=/dev/nvidia[0-$((ngpu - 1))]"
    } >"$STATE/gres.conf.new" && mv "$STATE/gres.conf.new" /etc/slurm/gres.conf
  fi
  cat >"$CONF.new" <<EOF
$MARK
ClusterName=decal-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SlurmdParameters=config_overrides
ReturnToService=2
MaxArraySize=100001
MaxJobCount=200000
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
$gres_line
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$real $node_gres State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  if [ -e "$CONF" ] && cmp -s "$CONF.new" "$CONF"; then
    rm -f "$CONF.new"
    return 1 # unchanged
  fi
  mv "$CONF.new" "$CONF"
  return 0 # changed
}

start() {
  mkdir -p "$STATE/log" || cannot "create $STATE"
  install_packages
  local changed=0
  write_conf && changed=1
  start_munge
  if [ "$changed" -eq 1 ] && { pid_alive "$STATE/slurmctld.pid" || pid_alive "$STATE/slurmd.pid"; }; then
    log "config changed: restarting the daemons"
    stop_daemons
  fi
  if ! pid_alive "$STATE/slurmctld.pid"; then
    /usr/sbin/slurmctld >"$STATE/log/slurmctld.start" 2>&1 9>&- \
      || cannot "start slurmctld: $(tail -n1 "$STATE/log/slurmctld.start") (log: $STATE/log/slurmctld.log)"
  fi
  if ! pid_alive "$STATE/slurmd.pid"; then
    /usr/sbin/slurmd -N localhost >"$STATE/log/slurmd.start" 2>&1 9>&- \
      || cannot "start slurmd: $(tail -n1 "$STATE/log/slurmd.start") (log: $STATE/log/slurmd.log)"
  fi
  local t=0 resumed=0
  while [ "$t" -lt $((WAIT_S * 5)) ]; do
    if node_usable; then
      return 0
    fi
    # A node left down/drained by an earlier run comes back once its slurmd answers.
    case "$(node_state)" in
      down* | drain* | drng* | fail*)
        if [ "$resumed" -eq 0 ] && [ "$t" -gt 10 ]; then
          scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
          resumed=1
        fi
        ;;
    esac
    sleep 0.2
    t=$((t + 1))
  done
  cannot "bring the node up within ${WAIT_S} s: sinfo says '$(node_state)' ($(sinfo -h -N -o '%E' 2>&1 | head -n1); logs: $STATE/log/)"
}

stop_one() { # pid file
  pid_alive "$1" || return 0
  local pid
  pid="$(cat "$1")"
  kill "$pid" 2>/dev/null
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

stop_daemons() {
  stop_one "$STATE/slurmd.pid"
  stop_one "$STATE/slurmctld.pid"
}

stop() {
  stop_daemons
  if [ -e "$STATE/munged.ours" ]; then
    stop_one /run/munge/munged.pid
    rm -f "$STATE/munged.ours"
  fi
}

status() {
  if ! command -v sinfo >/dev/null; then
    echo "slurm-single-node: not installed (no sinfo)"
    return 1
  fi
  sinfo -N -o '%N %P %t %c %m %E' 2>&1
  node_usable
}

cmd="${1:-start}"
case "$cmd" in
  start | stop | status) ;;
  *)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac
if [ "$cmd" = status ]; then
  status
  exit $?
fi
if [ "$(id -u)" -ne 0 ]; then
  if [ "$cmd" = start ] && command -v sinfo >/dev/null && node_usable; then
    exit 0 # someone else runs it; usable as is
  fi
  cannot "$cmd the cluster: needs root (run it as root: sudo $0 $cmd)"
fi
# One invocation at a time (tests and CI may start it concurrently).
mkdir -p "$STATE" || cannot "create $STATE"
exec 9>"$STATE/.lock" || cannot "open $STATE/.lock"
if command -v flock >/dev/null; then
  flock -w 120 9 || cannot "get the lock $STATE/.lock within 120 s"
fi
"$cmd"
