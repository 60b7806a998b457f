#!/usr/bin/env bash
# Runs every coverage-guided fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for a bounded time each,
# starting from the seeds in fuzz/corpus/<target>/, and fails on any panic, crash, timeout or
# out-of-memory (the input is kept in fuzz/artifacts/<target>/). New inputs a run finds go to
# fuzz/target/corpus/<target>/, never into the committed seeds.
#
#   scripts/fuzz.sh                                    # every target, FUZZ_SECONDS (default 20) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh uapi              # one target, longer
#   FUZZ_SANITIZER=address scripts/fuzz.sh l2_adapter  # with AddressSanitizer
#
# Without a sanitizer (the default) the targets build on the plain stable toolchain and a third faster:
# the fuzzed code is safe Rust, and panics, overflows (debug assertions are on) and hangs are what a run
# looks for. A sanitizer needs a -Z flag, which RUSTC_BOOTSTRAP=1 allows on stable.
# cargo-fuzz comes from scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-20}
SANITIZER=${FUZZ_SANITIZER:-none}
if [ "$SANITIZER" != none ]; then
  export RUSTC_BOOTSTRAP=1
fi
# Sixteen codegen units: the build is most of this script's time on a small machine.
FLAGS=(--sanitizer "$SANITIZER" --codegen-units 16)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is missing; scripts/install-deps.sh installs it" >&2
  exit 1
fi

started=$(date +%s)
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
  cargo fuzz build "${FLAGS[@]}"
else
  for target in "${targets[@]}"; do
    cargo fuzz build "${FLAGS[@]}" "$target"
  done
fi
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - started)) s"

# One target per core at a time: each still gets FUZZ_SECONDS of its own.
JOBS=${FUZZ_JOBS:-$(nproc)}
fuzz_one() {
  local target=$1 scratch="fuzz/target/corpus/$1"
  mkdir -p "$scratch"
  cargo fuzz run "${FLAGS[@]}" "$target" "$scratch" "fuzz/corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"fuzz/target/$target.log" 2>&1
}
failed=()
for ((i = 0; i < ${#targets[@]}; i += JOBS)); do
  batch=("${targets[@]:i:JOBS}")
  pids=()
  for target in "${batch[@]}"; do
    fuzz_one "$target" &
    pids+=($!)
  done
  for j in "${!batch[@]}"; do
    target=${batch[j]}
    log="fuzz/target/$target.log"
    if wait "${pids[j]}"; then
      runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
      echo "fuzz: $target: ${runs:-?} inputs in $SECONDS_EACH s, no crash"
    else
      tail -n 60 "$log" >&2
      echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/, the whole log in $log" >&2
      failed+=("$target")
    fi
  done
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets clean in $(($(date +%s) - started)) s"
