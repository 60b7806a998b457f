#!/usr/bin/env bash
# Installs the real test peers, then runs every check: formatting, clippy, all tests, and the fuzz targets.
# Under this script a missing peer fails its test (CI=1); a plain `cargo test` skips such tests instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export CI="${CI:-1}"
cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --check
cargo clippy --locked --all-targets -- -D warnings
cargo nextest run --locked --no-fail-fast "$@"
cargo test --locked --doc
# Coverage-guided fuzzing, FUZZ_SECONDS (20) per target: any crash fails the run.
./scripts/fuzz.sh
# The container image: built and checked when a Docker engine answers; otherwise it says it skipped.
./scripts/image-check.sh
