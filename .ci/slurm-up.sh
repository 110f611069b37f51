#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests of `ablation sweep --executor slurm`.
#
#   .ci/slurm-up.sh            install slurm-wlm + munge when absent (apt, as root), write a
#                              minimal slurm.conf, start munged, slurmctld, slurmd; wait until
#                              `sinfo` shows the node idle. Idempotent: a cluster that already
#                              answers is left alone.
#   .ci/slurm-down.sh          stop the daemons this script started (and only those).
#
# The node gets this machine's CPUs and memory (`slurmd -C`), one partition, auth/munge,
# proctrack/linuxproc, select/cons_tres with cores and memory as consumable resources, no
# cgroups and no accounting database. State, spool, logs and pid files live in
# $ABLATION_SLURM_DIR (default /var/lib/ablation-slurm). The daemons this call starts are
# appended to $ABLATION_SLURM_STARTED (default $ABLATION_SLURM_DIR/started), which
# slurm-down.sh reads: give each caller its own file and each stops only what it started.
set -euo pipefail
DIR=${ABLATION_SLURM_DIR:-/var/lib/ablation-slurm}
STARTED=${ABLATION_SLURM_STARTED:-$DIR/started}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
MARK="# written by sr-ablation .ci/slurm-up.sh"

say() { echo "slurm-up: $*"; }
die() { echo "slurm-up: error: $*" >&2; exit 1; }

cluster_answers() { timeout 10 sinfo -h -o %t >/dev/null 2>&1; }

node_idle() { timeout 10 sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; }

if command -v sinfo >/dev/null 2>&1 && cluster_answers && node_idle; then
  say "a cluster is already up: $(sinfo -h -o '%P %D %t' | tr '\n' ' ')"
  exit 0
fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || die "slurm-wlm/munge are not installed and we are not root; " \
    "install them: apt-get install slurm-wlm munge"
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install SLURM (slurmctld, slurmd, munge) by hand"
  say "installing slurm-wlm and munge (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge \
    >/dev/null
fi
[ "$(id -u)" -eq 0 ] || die "starting the SLURM daemons needs root"

mkdir -p "$DIR"/state "$DIR"/spool "$(dirname "$CONF")"
touch "$STARTED"

# --- munge: a key (the package makes one; make it if missing) and the daemon
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  chown munge:munge /etc/munge/munge.key 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
fi
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  if id munge >/dev/null 2>&1; then
    runuser -u munge -- munged
  else
    munged --force
  fi
  echo munged >> "$STARTED"
  for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n </dev/null | unmunge >/dev/null || die "munged did not start (see /var/log/munge/munged.log)"
fi

# --- slurm.conf: ours, or none at all (never overwrite a real cluster's)
if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  die "$CONF exists and was not written by this script; start that cluster's daemons instead"
fi
HOST=$(hostname -s)
NODE=$(slurmd -C | head -1 | sed -E 's/^NodeName=[^ ]+ //')
cat > "$CONF.tmp" <<EOF
$MARK: a one-node test cluster
ClusterName=ablation
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
DefMemPerCPU=1024
KillWait=2
MinJobAge=600
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 $NODE State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
mv "$CONF.tmp" "$CONF"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! alive "$DIR/slurmctld.pid"; then
  slurmctld -i
  echo slurmctld >> "$STARTED"
fi
if ! alive "$DIR/slurmd.pid"; then
  slurmd
  echo slurmd >> "$STARTED"
fi

for _ in $(seq 100); do
  node_idle && break
  # a node left DOWN by an earlier unclean stop comes back with ReturnToService=2; make sure
  if timeout 5 sinfo -h -o %t 2>/dev/null | grep -qE '^(down|drain)'; then
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  fi
  sleep 0.3
done
node_idle || die "the node did not become idle: $(sinfo 2>&1 | tail -2 | tr '\n' ' '); see $DIR/slurmctld.log"
say "up: $(sinfo -h -o '%P %D %t %c CPUs %m MB' | tr '\n' ' ')"
