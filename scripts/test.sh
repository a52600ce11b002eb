#!/usr/bin/env bash
# The project's test command (README, first lines; .ci/run calls exactly this).
# Installs what the tests need (scripts/ensure-deps.sh), checks formatting and lints, then runs
# every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-deps.sh

echo "== format"
cargo fmt --all -- --check

echo "== clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked

echo "== fuzz (bounded: 30 s per target)"
bash scripts/fuzz.sh 30
