#!/usr/bin/env bash
# The test command: prepares the machine (scripts/setup.sh), then runs every
# test of the workspace against real PostgreSQL, Redis and grpcurl.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked "$@"
