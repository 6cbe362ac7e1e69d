#!/usr/bin/env bash
# The test command: prepares the machine (scripts/setup.sh), runs every test
# of the workspace against real PostgreSQL, Redis and grpcurl, then runs the
# network-lab tests again inside a network namespace of their own
# (deploy/lab/lab.sh), where they probe real ICMP on loopback with nftables
# making chosen addresses silent or lossy. Outside the lab those tests skip.
# Then runs each fuzz target briefly (scripts/fuzz.sh).
# Extra arguments go to the first `cargo test` (e.g. a test name filter);
# with arguments the lab run and the fuzz run are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The PostgreSQL server setup.sh chose (the machine's, or a throwaway cluster
# of the tests' own): NETWARD_TEST_DATABASE_URL, and the unix-socket form
# NETWARD_TEST_LAB_DATABASE_URL for inside the lab.
set -a
# shellcheck disable=SC1090 # written by scripts/setup.sh
. "${NETWARD_TEST_ENV:-/var/tmp/netward-test.env}"
set +a

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
set +e
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

if (($# == 0)); then
  if ((EUID == 0)); then
    echo "==> network-lab tests (inside deploy/lab/lab.sh)"
    # Inside the namespace the host's 127.0.0.1 services are out of reach:
    # PostgreSQL is reached through its unix socket (the form setup.sh wrote).
    set +e
    # The end-to-end lab run prints its figures (detection latency, stored
    # vs sent, write throughput): --nocapture keeps them in the log.
    for tests in "-p netward-ping-executor --test it" "-p netward --test it lab_ -- --nocapture"; do
      # shellcheck disable=SC2086 # the words are cargo arguments
      deploy/lab/lab.sh -- env \
        NETWARD_TEST_DATABASE_URL="$NETWARD_TEST_LAB_DATABASE_URL" \
        cargo test --offline --locked --no-fail-fast $tests 2>&1 | tee -a "$log"
      lab_status=${PIPESTATUS[0]}
      ((lab_status == 0)) || status=$lab_status
    done
    set -e
  else
    echo "network-lab tests not run: they need root (a network namespace and nftables)"
  fi
fi

if (($# == 0)); then
  # The fuzz targets, briefly: each on its committed corpus (scripts/fuzz.sh;
  # NETWARD_FUZZ_SECONDS per target, default 10, 0 leaves them out).
  fuzz_seconds=${NETWARD_FUZZ_SECONDS:-10}
  if ((fuzz_seconds > 0)); then
    echo "==> fuzz targets (scripts/fuzz.sh $fuzz_seconds)"
    scripts/fuzz.sh "$fuzz_seconds" || status=1
  fi
fi

# One total over every test binary, as the last line.
awk '/^test result:/ { p += $4; f += $6; s += $8 }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
