#!/usr/bin/env bash
# Runs the core loop on this machine as separate processes — inventory, two
# planners (one leads, one stands by), two ping executors, an SNMP poller,
# alerting: docker-compose.yml's topology — against the local PostgreSQL and
# Redis, with the example inventory loaded: the separate-processes path
# (`netward up` runs all five in one process on SQLite). Ctrl-C stops
# everything.
#
#   deploy/run-local.sh [--release] [--inventory FILE.csv]
#
# Database: postgres://postgres@127.0.0.1/netward_local (recreated each run,
# override with NETWARD_DATABASE_URL); Redis: redis://127.0.0.1:6379.
# Logs: ./run-local/<service>.log. ICMP needs root (raw sockets) or a
# net.ipv4.ping_group_range that includes your group.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
inventory=deploy/examples/inventory.csv
while (($#)); do
  case "$1" in
    --release) profile=release; shift ;;
    --inventory) inventory=$2; shift 2 ;;
    *) echo "usage: deploy/run-local.sh [--release] [--inventory FILE.csv]" >&2; exit 2 ;;
  esac
done

target_dir=${CARGO_TARGET_DIR:-target}
if [[ $profile == release ]]; then cargo build --release --locked; else cargo build --locked; fi
netward="$target_dir/$profile/netward"

if [[ -z ${NETWARD_DATABASE_URL:-} ]]; then
  psql -h 127.0.0.1 -U postgres -qc 'DROP DATABASE IF EXISTS netward_local WITH (FORCE)' \
    -c 'CREATE DATABASE netward_local' >/dev/null
  export NETWARD_DATABASE_URL=postgres://postgres@127.0.0.1/netward_local
fi
export NETWARD_REDIS_URL=${NETWARD_REDIS_URL:-redis://127.0.0.1:6379}
export NETWARD_LOG__FORMAT=text
logs=run-local
mkdir -p "$logs"

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

start() {
  local name=$1
  shift
  "$netward" "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
}

wait_healthy() {
  local addr=$1
  for _ in $(seq 1 100); do
    if grpcurl -plaintext -max-time 1 -d '{}' "$addr" grpc.health.v1.Health/Check >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "run-local: $addr did not become healthy; see $logs/" >&2
  exit 1
}

start inventory inventory
wait_healthy 127.0.0.1:50051
"$netward" devices import "$inventory"
start alerting alerting
wait_healthy 127.0.0.1:50053
start planner planner
start planner-2 planner --grpc-addr 127.0.0.1:50062 --metrics-addr 127.0.0.1:9562
wait_healthy 127.0.0.1:50052
wait_healthy 127.0.0.1:50062
# Executors and the poller dial both planners and work for the leader.
export NETWARD_PLANNER_URL=http://127.0.0.1:50052,http://127.0.0.1:50062
NETWARD_PING_EXECUTOR__EXECUTOR_ID=ping-1 start ping-1 ping-executor
NETWARD_PING_EXECUTOR__EXECUTOR_ID=ping-2 \
  start ping-2 ping-executor --grpc-addr 127.0.0.1:50064 --metrics-addr 127.0.0.1:9564
NETWARD_SNMP_POLLER__EXECUTOR_ID=snmp-1 start snmp-1 snmp-poller
wait_healthy 127.0.0.1:50054
wait_healthy 127.0.0.1:50064
wait_healthy 127.0.0.1:50055

cat <<MSG
netward is running (logs in $logs/). Try:
  $netward planner status
  $netward planner status --planner-url http://127.0.0.1:50062   # the standby
  $netward status
  $netward alerts
  $netward interfaces DEVICE      # for a device with SNMP enabled
  grep AUTO-SCALING $logs/planner.log
Ctrl-C stops everything.
MSG
wait
