#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for SECONDS each (default 20) on its
# committed corpus and fails if any crashes, leaking or hanging included:
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# cargo-fuzz drives libFuzzer. Only the stable toolchain is installed here,
# so: --sanitizer none (AddressSanitizer needs nightly's -Zsanitizer), and
# RUSTC_BOOTSTRAP=1 as a guard for cargo-fuzz's nightly-only paths (always
# set for fuzz builds: cargo fingerprints it, flipping it rebuilds them all).
# It is set in this script only, never for the workspace build. Details and
# figures: docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(icmp_parse snmp_response device_csv config_load)
fi
command -v cargo-fuzz >/dev/null 2>&1 || {
  echo "fuzz: cargo-fuzz is not installed (scripts/setup.sh installs it)" >&2
  exit 1
}

# Flags differ from the workspace build's (instrumentation): a target dir
# of its own, kept between runs. 16 codegen units: builds several times
# faster than cargo-fuzz's default of 1, for slightly slower runs.
export CARGO_TARGET_DIR=${NETWARD_FUZZ_TARGET_DIR:-/var/cache/netward/fuzz-target}
export RUSTC_BOOTSTRAP=1
flags=(--sanitizer none --codegen-units 16)

started=$SECONDS
# Every target at once (`cargo fuzz build` takes one or all).
cargo fuzz build "${flags[@]}"
echo "fuzz: built in $((SECONDS - started)) s"

failed=()
for target in "${targets[@]}"; do
  # New inputs go to a scratch directory: the committed corpus stays as it is.
  scratch=$(mktemp -d)
  log=$(mktemp)
  status=0
  cargo fuzz run "${flags[@]}" "$target" "$scratch" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ { print $2 }' "$log")
  if ((status == 0)); then
    echo "fuzz: $target: ${runs:-?} runs in ${seconds} s (${rate:-?}/s), no crash"
  else
    echo "fuzz: $target FAILED (exit $status); the input is under fuzz/artifacts/$target/" >&2
    grep -E -A 30 "panicked|ERROR: libFuzzer|SUMMARY" "$log" | head -n 60 >&2 || tail -n 40 "$log" >&2
    failed+=("$target")
  fi
  rm -rf "$scratch" "$log"
done
echo "fuzz: $((SECONDS - started)) s in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashed: ${failed[*]}" >&2
  exit 1
fi
