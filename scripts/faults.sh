#!/usr/bin/env bash
# The fault suite (tests/it/faults.rs): alerting SIGKILLed under 10,000
# devices, alerting frozen (SIGSTOP) for 60 s under 10,000 devices with the
# executor's memory bounded, PostgreSQL stopped for 30 s (a cluster of the test's own), Redis
# flushed and stopped for 30 s (a redis-server of the test's own). Each runs
# the real binary's services as processes inside the network lab and prints
# its figures (sent vs stored, duplicates, recovery times). Minutes long and
# ignored in CI; run it alone, as root. Extra arguments narrow the test
# filter (e.g. scripts/faults.sh redis).
set -euo pipefail
cd "$(dirname "$0")/.."
((EUID == 0)) || { echo "faults.sh: must run as root (network lab)" >&2; exit 2; }

# The PostgreSQL server the tests use, as scripts/setup.sh chose it.
scripts/setup.sh
set -a
# shellcheck disable=SC1090 # written by scripts/setup.sh
. "${NETWARD_TEST_ENV:-/var/tmp/netward-test.env}"
set +a

# Build outside the lab (the namespace has no network for cargo).
cargo test -p netward --test it --no-run

# Inside the namespace the host's 127.0.0.1 services are out of reach:
# PostgreSQL is reached through its unix socket.
deploy/lab/lab.sh -- env \
  NETWARD_TEST_DATABASE_URL="$NETWARD_TEST_LAB_DATABASE_URL" \
  cargo test --offline -p netward --test it "faults::${1:-}" -- --ignored --nocapture --test-threads=1
