#!/usr/bin/env bash
# Whole-stack benchmark (a script, not a test): inventory, planner, ONE ping
# executor and alerting as separate processes of the release binary, on a
# PostgreSQL database of its own and a redis-server of its own, pinging N
# generated devices (all in 127.0.0.0/8) inside the network lab for a while;
# then one Markdown table: cycles, probed per cycle, skipped, overruns,
# unserved batches, alerting write latency, CPU and RSS per process,
# PostgreSQL CPU, fping's rate on the same addresses, bytes at rest and a
# projected disk for the default retentions. See BENCHMARKS.md.
#
#   scripts/bench-stack.sh [--devices N] [--duration SECONDS] [--interval SECONDS]
#                          [--out FILE.md] [--keep]
#
# Run as root. It runs itself inside the network lab: started outside a lab
# namespace, it builds the binary (if missing) and re-invokes itself through
# deploy/lab/lab.sh (`deploy/lab/lab.sh -- scripts/bench-stack.sh ...` works
# too). Inside, the host's 127.0.0.1 is out of reach: PostgreSQL is reached
# through its unix socket (BENCH_PG_SOCKET, default /var/run/postgresql,
# user postgres, trust auth) and Redis is a redis-server started here on
# 127.0.0.1:6390 (no persistence). The services take their default ports,
# free in the namespace's own loopback.
#
# Environment: NETWARD_BIN (a netward binary to use instead of
# ${CARGO_TARGET_DIR:-target}/release/netward), BENCH_PG_SOCKET,
# BENCH_PG_PORT (5432), BENCH_REDIS_PORT (6390), BENCH_SAMPLE_S (10),
# BENCH_WORKDIR (logs and samples; default a new /tmp/netward-bench.XXXXXX,
# kept and named at the end), TIER_BYTES_MINUTE / TIER_BYTES_HOUR (see the
# TIER_BYTES hook below).
#
# Ctrl-C (or any exit) stops every process it started and drops the database
# unless --keep.
set -euo pipefail

script=$(realpath "$0")
repo=$(cd "$(dirname "$script")/.." && pwd)

die() {
  echo "bench-stack: $*" >&2
  exit 2
}
say() { printf 'bench-stack: %s\n' "$*" >&2; }

usage() {
  die "usage: scripts/bench-stack.sh [--devices N] [--duration SECONDS] [--interval SECONDS] [--out FILE.md] [--keep]"
}

devices=10000
duration=600
interval=10
out=
keep=0
while (($#)); do
  case "$1" in
    --devices) (($# >= 2)) || usage; devices=$2; shift 2 ;;
    --duration) (($# >= 2)) || usage; duration=$2; shift 2 ;;
    --interval) (($# >= 2)) || usage; interval=$2; shift 2 ;;
    --out) (($# >= 2)) || usage; out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$script" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
    *) usage ;;
  esac
done
[[ $devices =~ ^[1-9][0-9]*$ ]] || die "--devices wants a positive integer"
[[ $duration =~ ^[1-9][0-9]*$ ]] || die "--duration wants whole seconds"
[[ $interval =~ ^[1-9][0-9]*$ ]] || die "--interval wants whole seconds"
# One /24 per site, at most 254 devices each, second octets 1-255 (the generator's limits).
((devices <= 63750 * 100)) || die "--devices $devices does not fit in 127.0.0.0/8 at 100 per site"
# Resolved before the cd, from where the caller is.
if [[ -n $out ]]; then
  out=$(realpath -m "$out")
fi
cd "$repo"
((EUID == 0)) || die "must run as root (network namespace, ICMP, /proc of postgres)"

sample_s=${BENCH_SAMPLE_S:-10}
pg_socket=${BENCH_PG_SOCKET:-/var/run/postgresql}
pg_port=${BENCH_PG_PORT:-5432}
redis_port=${BENCH_REDIS_PORT:-6390}

# ---------------------------------------------------------------------------
# Outside the lab: build (cargo has no network in the namespace), check the
# tools (fping may be installed here, not inside), and re-run in the lab.

in_lab() {
  [[ ${NETWARD_LAB:-} == 1 ]] && nft list table inet netward_lab >/dev/null 2>&1
}

target_dir=${CARGO_TARGET_DIR:-$repo/target}
netward=${NETWARD_BIN:-$target_dir/release/netward}
if [[ ! -x $netward ]]; then
  [[ -z ${NETWARD_BIN:-} ]] || die "NETWARD_BIN=$NETWARD_BIN is not an executable"
  say "no $netward: cargo build --release --locked -p netward"
  offline=()
  if in_lab; then offline=(--offline); fi
  CARGO_TARGET_DIR=$target_dir cargo build --release --locked "${offline[@]}" -p netward
fi
netward=$(realpath "$netward")

if ! command -v fping >/dev/null 2>&1; then
  in_lab && die "fping is missing (no network in the lab to install it): apt-get install -y fping, then run again"
  say "apt-get install -y fping"
  apt-get install -y -qq fping >/dev/null || { apt-get update -qq && apt-get install -y -qq fping >/dev/null; }
fi
for tool in psql redis-server redis-cli curl jq awk nft; do
  command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool (scripts/setup.sh installs what netward needs; jq: apt-get install -y jq)"
done
have_grpcurl=0
if command -v grpcurl >/dev/null 2>&1; then have_grpcurl=1; fi

if ! in_lab; then
  export NETWARD_BIN=$netward
  args=(--devices "$devices" --duration "$duration" --interval "$interval")
  if [[ -n $out ]]; then args+=(--out "$out"); fi
  if ((keep)); then args+=(--keep); fi
  exec "$repo/deploy/lab/lab.sh" -- "$script" "${args[@]}"
fi

# ---------------------------------------------------------------------------
# Inside the lab from here on.

# The caller's NETWARD_* settings must not leak into the services.
while IFS= read -r name; do
  [[ $name == NETWARD_LAB ]] || unset "$name"
done < <(compgen -e | grep '^NETWARD_' || true)

work=${BENCH_WORKDIR:-$(mktemp -d /tmp/netward-bench.XXXXXX)}
mkdir -p "$work"
db=bench_$$
db_url="postgres://postgres@$(printf '%s' "$pg_socket" | sed 's|/|%2F|g'):$pg_port/$db"
redis_url=redis://127.0.0.1:$redis_port
psql_admin=(psql -h "$pg_socket" -p "$pg_port" -U postgres -w -X -q -v ON_ERROR_STOP=1)

now() { echo "$EPOCHREALTIME"; }
# Arithmetic on decimals, by awk: calc 'EXPR' -v a=… -v b=…, printed with
# six decimals (never in exponent form, which epoch seconds would get).
calc() {
  local expr=$1
  shift
  awk "$@" "BEGIN { printf \"%.6f\", ($expr) }"
}

# --- processes ---------------------------------------------------------------

declare -A pid_of=()
started_order=()
db_created=0
cleaned=0

cleanup() {
  ((cleaned)) && return
  cleaned=1
  local i
  # In reverse order, one at a time: the executor first (it drains into
  # alerting), redis last.
  for ((i = ${#started_order[@]} - 1; i >= 0; i--)); do
    stop "${started_order[$i]}"
  done
  if ((db_created)); then
    if ((keep)); then
      say "kept database $db ($db_url)"
    else
      "${psql_admin[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
        say "could not drop database $db"
    fi
  fi
  say "logs and samples in $work"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM HUP

# start NAME COMMAND...: runs it in the background, its output in
# $work/NAME.log, in a session of its own: a Ctrl-C reaches this script
# only, which then stops everything in order (redis and the services would
# otherwise each react to the terminal's SIGINT on their own).
start() {
  local name=$1
  shift
  setsid "$@" >"$work/$name.log" 2>&1 &
  pid_of[$name]=$!
  started_order+=("$name")
}

# stop NAME: SIGTERM, then SIGKILL after 10 s; waits for the exit.
stop() {
  local name=$1 pid=${pid_of[$1]}
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name ($pid) did not stop in 10 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# Waits until the service's gRPC health check answers SERVING (grpcurl, as
# deploy/run-local.sh does), or its metrics endpoint answers when there is no grpcurl.
wait_healthy() {
  local name=$1 grpc=$2 metrics=$3
  for _ in $(seq 1 300); do
    kill -0 "${pid_of[$name]}" 2>/dev/null || die "$name exited; see $work/$name.log: $(tail -n 5 "$work/$name.log")"
    if ((have_grpcurl)); then
      if grpcurl -plaintext -max-time 1 -d '{}' "$grpc" grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING; then
        return 0
      fi
    elif curl -sf -m 1 "http://$metrics/metrics" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  die "$name did not become healthy in 60 s; see $work/$name.log"
}

# --- /proc sampling ------------------------------------------------------------

clk_tck=$(getconf CLK_TCK)

# CPU ticks (utime + stime) of a live process, or nothing.
cpu_ticks() {
  local stat fields
  stat=$(<"/proc/$1/stat") 2>/dev/null || return 1
  # The command name may hold spaces and parentheses: cut after the last ')'.
  read -r -a fields <<<"${stat##*) }"
  # fields[0] is field 3 (state): utime is field 14, stime field 15.
  echo $((fields[11] + fields[12]))
}

rss_kib() {
  local line
  [[ -r /proc/$1/status ]] || return 1
  while read -r line; do
    if [[ $line == VmRSS:* ]]; then
      read -r _ line _ <<<"$line"
      echo "$line"
      return 0
    fi
  done <"/proc/$1/status" 2>/dev/null
  return 1
}

samples=$work/samples.tsv
printf 't\tprocess\tpid\tcpu_ticks\trss_kib\n' >"$samples"

# The PostgreSQL processes counted: the backends serving the bench database
# (pg_stat_activity.datname, which includes its autovacuum workers), as
# "postgres-db"; the cluster's checkpointer, background writer and WAL
# writer, shared by every database of the cluster, as "postgres-shared".
pg_pids() {
  "${psql_admin[@]}" -d postgres -At -F $'\t' -c "
    SELECT 'postgres-db', pid FROM pg_stat_activity WHERE datname = '$db'
    UNION ALL
    SELECT 'postgres-shared', pid FROM pg_stat_activity
     WHERE backend_type IN ('checkpointer', 'background writer', 'walwriter')" 2>/dev/null || true
}

sample_once() {
  local t=$1 name pid ticks rss kind
  for name in "${started_order[@]}"; do
    pid=${pid_of[$name]}
    ticks=$(cpu_ticks "$pid") || continue
    rss=$(rss_kib "$pid") || continue
    printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$name" "$pid" "$ticks" "$rss" >>"$samples"
  done
  while IFS=$'\t' read -r kind pid; do
    [[ -n $pid ]] || continue
    ticks=$(cpu_ticks "$pid") || continue
    rss=$(rss_kib "$pid") || rss=0
    printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$kind" "$pid" "$ticks" "$rss" >>"$samples"
  done < <(pg_pids)
}

# --- planner cycles --------------------------------------------------------------

cycles_log=$work/cycles.jsonl
: >"$cycles_log"

# Appends the planner's recent ping cycles (it keeps the last 100 per kind)
# as JSON lines {id, started (epoch s), completed, devices, probed, skipped,
# overruns, unserved, unserved_devices, duration_ms}; the last line of an id wins.
# RFC 3339 with fractional seconds (jq's fromdateiso8601 takes none) to epoch seconds.
jq_epoch='def epoch: capture("^(?<s>[^.Z]+)(?<f>\\.[0-9]+)?Z$") | (.s + "Z" | fromdateiso8601) + ("0" + (.f // "") | tonumber);'
fetch_cycles() {
  if ((have_grpcurl)); then
    # probed: devices that answered or not, as the executors reported in BatchDone.
    grpcurl -plaintext -max-time 5 -emit-defaults \
      -d '{"kind":"EXECUTOR_KIND_PING","page_size":100}' \
      127.0.0.1:50052 netward.v1.PlannerService/ListCycles 2>/dev/null |
      jq -c "$jq_epoch"'.cycles[]? | {id: (.cycleId | tonumber),
             started: (.startedAt | epoch), completed, devices: .deviceCount,
             probed: (.succeeded + .failed), skipped, overruns, unserved,
             unserved_devices: .unservedDevices, duration_ms: .durationMs}' >>"$cycles_log" || true
  else
    # netward planner status has no succeeded/failed: probed = planned - skipped - unserved.
    "$netward" planner status --json --cycles 100 2>/dev/null |
      jq -c "$jq_epoch"'.cycles[]? | select(.kind == "ping") | {id: .cycle_id,
             started: (.started_at | epoch), completed, devices: .device_count,
             probed: (.device_count - .skipped - .unserved_devices), skipped, overruns, unserved,
             unserved_devices, duration_ms}' >>"$cycles_log" || true
  fi
}

# --- Prometheus text --------------------------------------------------------------

# prom_sum FILE NAME [SUBSTRING]: the sum of the series NAME (any labels) whose
# label set contains SUBSTRING; empty when there is none.
prom_sum() {
  awk -v name="$2" -v want="${3:-}" '
    /^#/ { next }
    {
      series = $1
      base = series; sub(/\{.*/, "", base)
      if (base != name) next
      if (want != "" && index(series, want) == 0) next
      sum += $2; found = 1
    }
    END { if (found) printf "%.6f", sum }' "$1"
}

# hist_quantile Q NAME START.prom END.prom: the Q quantile of histogram NAME
# over what was recorded between the two scrapes (bucket deltas), linear
# within a bucket as PromQL's histogram_quantile; "> LAST" when it falls in
# the +Inf bucket, empty with no observations.
hist_quantile() {
  awk -v q="$1" -v name="${2}_bucket" '
    function le_of(series,   s) { s = series; sub(/.*le="/, "", s); sub(/".*/, "", s); return s }
    /^#/ { next }
    {
      base = $1; sub(/\{.*/, "", base)
      if (base != name) next
      le = le_of($1)
      if (FILENAME == ARGV[1]) { start[le] += $2; next }
      count[le] += $2
      if (!(le in seen)) { seen[le] = 1; order[n++] = le }
    }
    END {
      if (n == 0) exit
      # Finite bounds ascending, then +Inf.
      m = 0
      for (i = 0; i < n; i++) if (order[i] != "+Inf") bounds[m++] = order[i] + 0
      for (i = 1; i < m; i++) { v = bounds[i]; j = i - 1; while (j >= 0 && bounds[j] > v) { bounds[j + 1] = bounds[j]; j-- } bounds[j + 1] = v }
      total = count["+Inf"] - start["+Inf"]
      if (total <= 0) exit
      rank = q * total
      prev_bound = 0; prev_count = 0
      for (i = 0; i < m; i++) {
        key = ""
        for (k in count) if (k != "+Inf" && k + 0 == bounds[i]) key = k
        c = count[key] - start[key]
        if (c >= rank) {
          width = bounds[i] - prev_bound
          frac = (c == prev_count) ? 1 : (rank - prev_count) / (c - prev_count)
          printf "%.6f", prev_bound + width * frac
          exit
        }
        prev_bound = bounds[i]; prev_count = c
      }
      printf "> %s", bounds[m - 1]
    }' "$3" "$4"
}

# Seconds as ms/s for the table.
fmt_secs() {
  local value=$1
  case $value in
    "") echo "n/a" ;;
    ">"*) echo "> $(fmt_secs "${value#> }")" ;;
    *) awk -v s="$value" 'BEGIN { if (s < 1) printf "%.2f ms", s * 1000; else printf "%.2f s", s }' ;;
  esac
}

fmt_bytes() {
  local value=$1
  [[ -n $value ]] || { echo "n/a"; return; }
  awk -v b="$value" 'BEGIN {
    split("B KiB MiB GiB TiB PiB", unit, " "); i = 1; v = b
    while (v >= 1024 && i < 6) { v /= 1024; i++ }
    if (i == 1) printf "%.0f B", v; else printf "%.1f %s", v, unit[i] }'
}

fmt_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# ---------------------------------------------------------------------------
# Storage grouping: the one place that knows the alerting schema's table
# names. Every leaf table of schema `alerting` is measured with
# pg_total_relation_size (heap + indexes + TOAST; partitions are leaf tables,
# attributed to their partitioned root); this function says which group a
# root table's bytes and rows count in, or prints nothing to leave it out.
# The groups raw, minute and hour are the retention tiers of the projection.
storage_group() {
  case $1 in
    probe_results* | probe_raw* | probe_batches*) echo raw ;;
    probe_rollups_hour* | probe_hourly* | probe_rollups_1h*) echo hour ;;
    probe_rollups* | probe_minute*) echo minute ;;
    probe_*) echo "probe_other" ;;
    ingested_batches | device_state | state_changes) echo "$1" ;;
    *) ;;
  esac
}
storage_groups=(raw minute hour probe_other ingested_batches device_state state_changes)

# Retentions of the projection, in days (raw, one-minute tier, hourly tier).
RAW_DAYS=7
MINUTE_DAYS=30
HOUR_DAYS=400

# TIER_BYTES hook: bytes per device-day of a rollup tier, for the projection.
# A fixed figure in TIER_BYTES_MINUTE / TIER_BYTES_HOUR wins (e.g. from a
# longer run or store_bench). Otherwise it is measured as the tier's bytes at
# rest per stored row times TIER_ROWS_PER_DEVICE_DAY, the rows one device
# adds per day: one one-minute row per device and 10-minute block (144 a
# day), one hourly row per device and day. A run shorter than a day has
# partly filled rows (the rollup runs 2 minutes after a block closes, a day
# after a day does): for the projection pass the full-row figures that
# `store_bench` measures (see BENCHMARKS.md). A tier with no rows prints
# "not measured" and counts 0 in the projection.
declare -A TIER_ROWS_PER_DEVICE_DAY=([minute]=144 [hour]=1)
declare -A TIER_BYTES=([minute]="${TIER_BYTES_MINUTE:-}" [hour]="${TIER_BYTES_HOUR:-}")
# tier_bytes_per_device_day TIER BYTES ROWS -> "VALUE<TAB>how it was obtained", or "" when not measured.
tier_bytes_per_device_day() {
  local tier=$1 bytes=$2 rows=$3
  if [[ -n ${TIER_BYTES[$tier]} ]]; then
    printf '%s\tTIER_BYTES_%s\n' "${TIER_BYTES[$tier]}" "${tier^^}"
  elif ((rows > 0)); then
    printf '%s\t%s B/row x %s rows/device-day\n' \
      "$(calc 'b / r * k' -v b="$bytes" -v r="$rows" -v k="${TIER_ROWS_PER_DEVICE_DAY[$tier]}")" \
      "$(calc 'b / r' -v b="$bytes" -v r="$rows" | awk '{ printf "%.1f", $1 }')" \
      "${TIER_ROWS_PER_DEVICE_DAY[$tier]}"
  fi
}

# Every leaf table of schema alerting: root name, table, bytes, rows.
storage_rows() {
  "${psql_admin[@]}" -d "$db" -At -F $'\t' -c "
    SELECT coalesce(root.relname, c.relname), c.relname, pg_total_relation_size(c.oid),
           (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I',
                                                       n.nspname, c.relname), false, true, '')))[1]::text::bigint
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_class root ON root.oid = pg_partition_root(c.oid) AND root.oid <> c.oid
     WHERE n.nspname = 'alerting' AND c.relkind IN ('r', 'm')
     ORDER BY 1, 2"
}

# ---------------------------------------------------------------------------
# 1-2. Database, Redis, inventory, devices.

# The cluster's settings that move the figures, for the table. With
# autovacuum off (as some CI images set it), rows updated in place
# (device_state, rollups) leave every old version behind: the "as left"
# sizes are then the worst case, and the VACUUM FULL ones the steady state.
pg_settings=$("${psql_admin[@]}" -d postgres -At -c "
  SELECT 'PostgreSQL ' || current_setting('server_version') || '; autovacuum ' || current_setting('autovacuum')
      || '; fsync ' || current_setting('fsync') || '; synchronous_commit ' || current_setting('synchronous_commit')
      || '; shared_buffers ' || current_setting('shared_buffers')") ||
  die "cannot reach PostgreSQL through $pg_socket (is it running? scripts/setup.sh)"
if [[ $pg_settings == *"autovacuum off"* ]]; then
  say "autovacuum is off in this cluster: updated tables keep their dead rows (see the VACUUM FULL column)"
fi

say "binary $netward; work dir $work"
"${psql_admin[@]}" -d postgres -c "CREATE DATABASE $db" >/dev/null ||
  die "cannot create database $db through $pg_socket (is PostgreSQL running? scripts/setup.sh)"
db_created=1

export NETWARD_DATABASE_URL=$db_url
export NETWARD_REDIS_URL=$redis_url
export NETWARD_LOG__FORMAT=text
export NETWARD_PLANNER__PING_INTERVAL=${interval}s

start redis redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no
for _ in $(seq 1 100); do
  redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
  kill -0 "${pid_of[redis]}" 2>/dev/null || die "redis-server exited: $(tail -n 5 "$work/redis.log")"
  sleep 0.1
done

start inventory "$netward" inventory
wait_healthy inventory 127.0.0.1:50051 127.0.0.1:9551

# Sites of up to 100 devices, one /24 each from 127.1.0.0 up (never 127.0/16):
# the generator's whole sites, cut to exactly N rows (a site's router comes first).
per_site=$((devices < 100 ? devices : 100))
sites=$(((devices + per_site - 1) / per_site))
"$netward" devices generate --sites "$sites" --per-site "$per_site" --seed 1 |
  head -n $((devices + 1)) >"$work/fleet.csv"
say "importing $devices devices ($sites sites of up to $per_site)"
import_started=$(now)
"$netward" devices import "$work/fleet.csv" >"$work/import.log" 2>&1 ||
  die "import failed: $(tail -n 5 "$work/import.log")"
import_s=$(calc 'b - a' -v a="$import_started" -v b="$(now)")

# The addresses as the inventory holds them; every one must be in 127.0.0.0/8.
"$netward" devices list --json | jq -r .ip >"$work/addresses.txt"
listed=$(wc -l <"$work/addresses.txt")
((listed == devices)) || die "the inventory lists $listed devices, not $devices"
if grep -qv '^127\.' "$work/addresses.txt"; then
  die "an address outside 127.0.0.0/8 in the inventory: $(grep -v '^127\.' "$work/addresses.txt" | head -n 1)"
fi

# 3. fping's rate on the same addresses, before the services probe: one
# echo each, no retry, no inter-packet wait, 1 s timeout (as ping_bench).
say "fping: one pass over $devices addresses"
# fping keeps one sequence number per probe in flight and has 65,535: a
# larger fleet goes in consecutive passes of 60,000 addresses, timed as one.
split -l 60000 -d "$work/addresses.txt" "$work/addresses.part."
: >"$work/fping.txt"
fping_started=$(now)
for part in "$work"/addresses.part.*; do
  fping -c1 -r0 -i0 -t1000 -q -f "$part" 2>>"$work/fping.txt" || true
done
fping_s=$(calc 'b - a' -v a="$fping_started" -v b="$(now)")
fping_answered=$(grep -c ' = 1/1/' "$work/fping.txt" || true)
fping_rate=$(calc 'n / s' -v n="$devices" -v s="$fping_s")

# Alerting before the executor, so that the first results are not buffered.
start alerting "$netward" alerting
wait_healthy alerting 127.0.0.1:50053 127.0.0.1:9553
start planner "$netward" planner
wait_healthy planner 127.0.0.1:50052 127.0.0.1:9552
NETWARD_PING_EXECUTOR__EXECUTOR_ID=bench-ping-1 start ping-executor "$netward" ping-executor
wait_healthy ping-executor 127.0.0.1:50054 127.0.0.1:9554
stack_started=$(now)

# ---------------------------------------------------------------------------
# 4-5. Run for --duration, sampling every BENCH_SAMPLE_S seconds.

services=(inventory planner ping-executor alerting)
scrape() {
  curl -sf -m 5 "http://127.0.0.1:9553/metrics" >"$work/alerting-$1.prom" || : >"$work/alerting-$1.prom"
  curl -sf -m 5 "http://127.0.0.1:9552/metrics" >"$work/planner-$1.prom" || : >"$work/planner-$1.prom"
  curl -sf -m 5 "http://127.0.0.1:9554/metrics" >"$work/executor-$1.prom" || : >"$work/executor-$1.prom"
}

say "running for ${duration} s (ping interval ${interval} s, a sample every ${sample_s} s)"
scrape start
t0=$(now)
sample_once 0
fetch_cycles
n_samples=1
while :; do
  next=$(calc 'a + k * s' -v a="$t0" -v k="$n_samples" -v s="$sample_s")
  end=$(calc 'a + d' -v a="$t0" -v d="$duration")
  if awk -v n="$next" -v e="$end" 'BEGIN { exit !(n > e) }'; then next=$end; fi
  wait_s=$(calc 'x > 0 ? x : 0' -v x="$(calc 'n - t' -v n="$next" -v t="$(now)")")
  sleep "$wait_s"
  for name in "${started_order[@]}"; do
    kill -0 "${pid_of[$name]}" 2>/dev/null || die "$name exited during the run; see $work/$name.log"
  done
  t=$(calc 'b - a' -v a="$t0" -v b="$(now)")
  sample_once "$t"
  fetch_cycles
  n_samples=$((n_samples + 1))
  if ((n_samples % 6 == 0)); then
    say "$(printf '%.0f' "$t") s: $(jq -s 'map(select(.completed)) | unique_by(.id) | length' "$cycles_log") ping cycles completed"
  fi
  awk -v n="$next" -v e="$end" 'BEGIN { exit !(n >= e) }' && break
done
t_end=$(now)
window_s=$(calc 'b - a' -v a="$t0" -v b="$t_end")
# The executor stops first (it drains: running batches end and their results
# are acked), so that alerting's counters and the tables at rest agree.
scrape end
say "stopping the ping executor (drain), then measuring storage"
stop ping-executor
sleep 1
curl -sf -m 5 "http://127.0.0.1:9553/metrics" >"$work/alerting-end.prom" || : >"$work/alerting-end.prom"
# Nothing writes while the tables are measured (and VACUUM FULL locks them).
stop alerting
stop planner

# ---------------------------------------------------------------------------
# Figures.

# Cycles: the last report of each id; those that started in the window and
# completed (the first cycles, planned before the executor connected, are
# warm-up).
jq -s --argjson t0 "$t0" 'group_by(.id) | map(last) | map(select(.completed and .started >= $t0))' \
  "$cycles_log" >"$work/cycles.json"
cycles_done=$(jq length "$work/cycles.json")
cycles_warmup=$(jq -s --argjson t0 "$t0" 'map(select(.started < $t0)) | unique_by(.id) | length' "$cycles_log")
read -r probed_min probed_mean skipped_sum overruns_sum unserved_sum unserved_devices_sum <<<"$(
  jq -r --argjson n "$devices" '
    if length == 0 then "n/a n/a 0 0 0 0" else
      [ (map(.probed) | min) * 100 / $n, (map(.probed) | add) * 100 / length / $n,
        (map(.skipped) | add), (map(.overruns) | add), (map(.unserved) | add),
        (map(.unserved_devices) | add) ] | map(tostring) | join(" ")
    end' "$work/cycles.json"
)"
pct() {
  if [[ $1 == n/a ]]; then echo n/a; else awk -v v="$1" 'BEGIN { printf "%.2f", v }'; fi
}

a_start=$work/alerting-start.prom
a_end=$work/alerting-end.prom
write_p50=$(hist_quantile 0.5 netward_alerting_write_seconds "$a_start" "$a_end")
write_p99=$(hist_quantile 0.99 netward_alerting_write_seconds "$a_start" "$a_end")
writes=$(calc 'b - a' -v a="$(prom_sum "$a_start" netward_alerting_write_seconds_count)" -v b="$(prom_sum "$a_end" netward_alerting_write_seconds_count)")
lag_p50=$(hist_quantile 0.5 netward_alerting_ingest_lag_seconds "$a_start" "$a_end")
lag_p99=$(hist_quantile 0.99 netward_alerting_ingest_lag_seconds "$a_start" "$a_end")
results_stored=$(prom_sum "$a_end" netward_alerting_results_stored_total)
results_note="netward_alerting_results_stored_total"
duplicates=$(prom_sum "$a_end" netward_alerting_duplicate_batches_total)
e_start=$work/executor-start.prom
e_end=$work/executor-end.prom
packets=$(calc 'b - a' -v a="$(prom_sum "$e_start" netward_executor_packets_sent_total)" -v b="$(prom_sum "$e_end" netward_executor_packets_sent_total)")
packet_rate=$(calc 'p / w' -v p="$packets" -v w="$window_s")
probes=$(calc 'b - a' -v a="$(prom_sum "$e_start" netward_executor_probes_total)" -v b="$(prom_sum "$e_end" netward_executor_probes_total)")

# CPU and RSS per process over the window. For the PostgreSQL kinds, per PID:
# the last sample minus the first (0 for a PID born after the first
# sample), summed; a backend that exited loses at most its last interval.
cpu_rows=$(awk -F '\t' -v hz="$clk_tck" -v w="$window_s" '
  NR == 1 { next }
  {
    key = $2 SUBSEP $3
    if (!(key in first)) { first[key] = ($1 == 0) ? $4 : 0; procs[$2] = procs[$2] " " $3 }
    last[key] = $4
    if ($2 !~ /^postgres/) {
      n[$2]++; rss[$2, n[$2]] = $5
      if ($5 > max[$2]) max[$2] = $5
    }
  }
  END {
    for (p in procs) {
      split(substr(procs[p], 2), pids, " ")
      ticks = 0; count = 0
      for (i in pids) { ticks += last[p, pids[i]] - first[p, pids[i]]; count++ }
      s = ticks / hz
      if (p ~ /^postgres/)
        printf "%s\t%.1f\t%.1f\t%d\t-\t-\t-\t-\n", p, s, 100 * s / w, count
      else
        printf "%s\t%.1f\t%.1f\t1\t%d\t%d\t%d\t%d\n", p, s, 100 * s / w, rss[p, 1], rss[p, int((n[p] + 1) / 2)], rss[p, n[p]], max[p]
    }
  }' "$samples")
cpu_of() { awk -F '\t' -v p="$1" '$1 == p' <<<"$cpu_rows"; }

# 6. Storage at rest, grouped by storage_group, measured twice: as the run
# left it, and after VACUUM FULL, without the dead versions of rows updated
# in place (device_state on every result, the one-minute rollups merged
# batch by batch). Under autovacuum, whose freed space new rows reuse, a
# long run's tables come close to the second: the per-result, per-device-day
# and projected figures use the one PROJECT_FROM names (compacted or as-is).
PROJECT_FROM=${BENCH_PROJECT_FROM:-compacted}
# shellcheck disable=SC2034 # compact_rows is read through the group_rows nameref
declare -A asis_bytes=() asis_rows=() compact_bytes=() compact_rows=() group_tables=()
for g in "${storage_groups[@]}"; do group_tables[$g]=""; done
# group_sizes FILE BYTES_ARRAY ROWS_ARRAY: sums a storage_rows listing per group.
# shellcheck disable=SC2004 # associative arrays (through namerefs): the $ is the key
group_sizes() {
  local -n bytes_of=$2 rows_of=$3
  local root bytes rows g
  for g in "${storage_groups[@]}"; do bytes_of[$g]=0; rows_of[$g]=0; done
  while IFS=$'\t' read -r root _ bytes rows; do
    g=$(storage_group "$root")
    [[ -n $g ]] || continue
    bytes_of[$g]=$((bytes_of[$g] + bytes))
    rows_of[$g]=$((rows_of[$g] + rows))
    case " ${group_tables[$g]} " in *" $root "*) ;; *) group_tables[$g]="${group_tables[$g]:+${group_tables[$g]} }$root" ;; esac
  done <"$1"
}
storage_rows >"$work/storage-as-is.tsv"
group_sizes "$work/storage-as-is.tsv" asis_bytes asis_rows
say "VACUUM (FULL, ANALYZE) of $db"
"${psql_admin[@]}" -d "$db" -c 'VACUUM (FULL, ANALYZE)' >/dev/null
storage_rows >"$work/storage-compacted.tsv"
group_sizes "$work/storage-compacted.tsv" compact_bytes compact_rows
if [[ $PROJECT_FROM == as-is ]]; then
  declare -n group_bytes=asis_bytes group_rows=asis_rows
else
  declare -n group_bytes=compact_bytes group_rows=compact_rows
fi
total_bytes=0
asis_total=0
# shellcheck disable=SC2004 # associative arrays: the $ is the key
for g in "${storage_groups[@]}"; do
  total_bytes=$((total_bytes + group_bytes[$g]))
  asis_total=$((asis_total + asis_bytes[$g]))
done

if [[ -z $results_stored ]] || awk -v r="$results_stored" 'BEGIN { exit !(r == 0) }'; then
  results_stored=${group_rows[raw]}
  results_note="raw rows counted (no netward_alerting_results_stored_total)"
fi
results_stored=$(printf '%.0f' "$results_stored")
run_days=$(calc '(b - a) / 86400' -v a="$stack_started" -v b="$t_end")
bytes_per_result=
if ((results_stored > 0)); then
  bytes_per_result=$(calc 'b / r' -v b="${group_bytes[raw]}" -v r="$results_stored")
fi
bytes_per_device_day=$(calc 't / n / d' -v t="$total_bytes" -v n="$devices" -v d="$run_days")
asis_per_device_day=$(calc 't / n / d' -v t="$asis_total" -v n="$devices" -v d="$run_days")
results_per_device_day=$((86400 / interval))

declare -A tier_value=() tier_how=()
for tier in minute hour; do
  measured=$(tier_bytes_per_device_day "$tier" "${group_bytes[$tier]}" "${group_rows[$tier]}")
  tier_value[$tier]=${measured%%$'\t'*}
  tier_how[$tier]=${measured#*$'\t'}
done
raw_part=$(calc 'b * r * d' -v b="${bytes_per_result:-0}" -v r="$results_per_device_day" -v d="$RAW_DAYS")
minute_part=$(calc 'b * d' -v b="${tier_value[minute]:-0}" -v d="$MINUTE_DAYS")
hour_part=$(calc 'b * d' -v b="${tier_value[hour]:-0}" -v d="$HOUR_DAYS")
projected_device=$(calc 'a + b + c' -v a="$raw_part" -v b="$minute_part" -v c="$hour_part")
projected_total=$(calc 'p * n' -v p="$projected_device" -v n="$devices")
projection_note=""
for tier in minute hour; do
  [[ -n ${tier_value[$tier]} ]] || projection_note+=" ($tier tier not measured: 0)"
done

# ---------------------------------------------------------------------------
# 7. The report.

sizes() { printf '%s -> %s' "$(fmt_bytes "${asis_bytes[$1]}")" "$(fmt_bytes "${compact_bytes[$1]}")"; }

tier_cell() {
  local tier=$1
  if [[ -n ${tier_value[$tier]} ]]; then
    printf '%s/device-day (%s)' "$(fmt_bytes "${tier_value[$tier]}")" "${tier_how[$tier]}"
  else
    printf 'not measured'
  fi
}

{
  echo "Storage at rest, schema alerting (pg_total_relation_size of every leaf table: heap, indexes, TOAST):"
  echo
  printf '| group | tables | rows | bytes as left | bytes after VACUUM FULL |\n|---|---|---:|---:|---:|\n'
  for g in "${storage_groups[@]}"; do
    [[ -n ${group_tables[$g]} ]] || continue
    printf '| %s | %s | %s | %s (%s) | %s (%s) |\n' "$g" "${group_tables[$g]}" "${asis_rows[$g]}" \
      "${asis_bytes[$g]}" "$(fmt_bytes "${asis_bytes[$g]}")" "${compact_bytes[$g]}" "$(fmt_bytes "${compact_bytes[$g]}")"
  done
  echo
} >"$work/storage.md"

commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo "?")
{
  echo "### Whole-stack benchmark: $devices devices, ${duration} s, ping interval ${interval} s"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $commit, $(nproc) cores; window ${window_s%.*} s, $n_samples samples"
  echo
  echo "| measure | value |"
  echo "|---|---|"
  echo "| devices | $devices (import $(printf '%.1f' "$import_s") s) |"
  echo "| duration | ${duration} s (measured window $(printf '%.1f' "$window_s") s) |"
  echo "| ping cycles completed (started in the window; $cycles_warmup warm-up cycles before it left out) | $cycles_done |"
  echo "| probed per cycle, % of N (min / mean) | $(pct "$probed_min") / $(pct "$probed_mean") |"
  echo "| skipped (sum over cycles) | $skipped_sum |"
  echo "| overruns (sum over cycles) | $overruns_sum |"
  echo "| unserved batches (sum over cycles) | $unserved_sum ($unserved_devices_sum devices) |"
  echo "| alerting write p50 / p99 (netward_alerting_write_seconds, ${writes%.*} writes) | $(fmt_secs "$write_p50") / $(fmt_secs "$write_p99") |"
  echo "| ingest lag p50 / p99 (netward_alerting_ingest_lag_seconds; alerting truncates sent_at to whole seconds) | $(fmt_secs "$lag_p50") / $(fmt_secs "$lag_p99") |"
  echo "| executor packets sent / probes in window | ${packets%.*} ($(printf '%.0f' "$packet_rate")/s) / ${probes%.*} |"
  for name in "${services[@]}" redis; do
    IFS=$'\t' read -r _ cpu pcore _ r1 r2 r3 rmax <<<"$(cpu_of "$name")"
    echo "| $name: CPU s (% of one core); RSS MiB first / mid / last / max | ${cpu:-?} (${pcore:-?} %); $(fmt_mib "${r1:-0}") / $(fmt_mib "${r2:-0}") / $(fmt_mib "${r3:-0}") / $(fmt_mib "${rmax:-0}") |"
  done
  IFS=$'\t' read -r _ cpu pcore count _ <<<"$(cpu_of postgres-db)"
  echo "| PostgreSQL, backends of the bench database: CPU s (% of one core) | ${cpu:-0} (${pcore:-0} %), ${count:-0} PIDs |"
  IFS=$'\t' read -r _ cpu pcore count _ <<<"$(cpu_of postgres-shared)"
  echo "| PostgreSQL, checkpointer + bgwriter + walwriter (whole cluster) | ${cpu:-0} (${pcore:-0} %) |"
  echo "| PostgreSQL settings | $pg_settings |"
  echo "| fping one pass (-c1 -r0 -i0 -t1000) | $(printf '%.0f' "$fping_rate") addresses/s; $(printf '%.2f' "$fping_s") s for $devices, $fping_answered answered |"
  echo "| results stored ($results_note) | $results_stored; duplicate batches ${duplicates:-0} |"
  echo "| storage below: bytes as left by the run -> after VACUUM FULL; per-result, per-device-day and projection from: $PROJECT_FROM | |"
  echo "| raw (${group_tables[raw]:-none}) | $(sizes raw) |"
  echo "| one-minute tier (${group_tables[minute]:-none}) | $(sizes minute); $(tier_cell minute) |"
  echo "| hourly tier (${group_tables[hour]:-none}) | $(sizes hour); $(tier_cell hour) |"
  echo "| ingested_batches / device_state / state_changes | $(sizes ingested_batches) / $(sizes device_state) / $(sizes state_changes) |"
  echo "| bytes per result (raw / results) | $(awk -v b="${bytes_per_result:-}" 'BEGIN { if (b == "") print "n/a"; else printf "%.1f", b }') |"
  echo "| bytes per device-day (all counted tables / N / $(printf '%.4f' "$run_days") run-days) | $(printf '%.0f' "$bytes_per_device_day") (as left: $(printf '%.0f' "$asis_per_device_day")) |"
  echo "| projected per device: raw ${RAW_DAYS} d x ${results_per_device_day}/day + minute ${MINUTE_DAYS} d + hourly ${HOUR_DAYS} d | $(fmt_bytes "$projected_device")$projection_note |"
  echo "| projected for $devices devices | $(fmt_bytes "$projected_total") |"
} >"$work/result.md"

echo
cat "$work/storage.md"
cat "$work/result.md"
if [[ -n $out ]]; then
  cat "$work/result.md" >"$out"
  echo >>"$out"
  cat "$work/storage.md" >>"$out"
  say "table written to $out"
fi
