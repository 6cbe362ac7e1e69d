#!/usr/bin/env bash
# Rewrites the contract baseline (contracts/netward-v1.binpb) from today's
# proto/ — only when a change to the protos is meant to be incompatible and
# is versioned as such (contracts/README.md). CI checks every change against
# the committed baseline with `buf breaking`; additions never need this.
set -euo pipefail
cd "$(dirname "$0")/.."
buf build --exclude-source-info -o contracts/netward-v1.binpb
echo "contracts/netward-v1.binpb rebuilt from proto/: commit it with the change that needs it"
