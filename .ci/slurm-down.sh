#!/usr/bin/env bash
# Stop the SLURM daemons that .ci/slurm-up.sh started (listed in $ABLATION_SLURM_STARTED,
# default $ABLATION_SLURM_DIR/started), newest first; daemons it found running are left alone.
set -euo pipefail
DIR=${ABLATION_SLURM_DIR:-/var/lib/ablation-slurm}
STARTED=${ABLATION_SLURM_STARTED:-$DIR/started}
[ -f "$STARTED" ] || exit 0

pidfile() {
  case $1 in
    munged) echo /run/munge/munged.pid ;;
    *) echo "$DIR/$1.pid" ;;
  esac
}

for daemon in $(tac "$STARTED"); do
  f=$(pidfile "$daemon")
  if [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
    pid=$(cat "$f")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "slurm-down: stopped $daemon (pid $pid)"
  fi
done
rm -f "$STARTED"
