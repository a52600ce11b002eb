#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of the event decoder and the CSV mapping (issue 8).
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]     # default 30: about a minute for both targets
#
# Installs cargo-fuzz when missing, builds the targets of fuzz/ (libFuzzer with AddressSanitizer;
# the stable toolchain is let use the nightly flags cargo-fuzz needs through RUSTC_BOOTSTRAP=1),
# then runs each target from a scratch copy of its committed seed corpus (fuzz/corpus/<target>),
# so the committed seeds stay small and reviewed. Any crash fails the script; libFuzzer leaves
# the input under fuzz/artifacts/<target>/. A crash found is fixed and its input committed to
# fuzz/corpus/<target>/ (every later run starts from it) and turned into a test in
# tests/hostile_input.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install; cached in ~/.cargo/bin afterwards)"
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
echo "== fuzz: building targets"
(cd fuzz && cargo fuzz build --release)

scratch="$(mktemp -d -t swipeguard-fuzz.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
for target in decode_event csv_mapping; do
  mkdir -p "$scratch/$target"
  cp fuzz/corpus/"$target"/* "$scratch/$target/"
  echo "== fuzz: $target for ${secs}s"
  # -rss_limit_mb keeps a memory blow-up a finding rather than an OOM kill; -max_len lets the
  # fuzzer grow inputs past the decoder's 64 KiB message limit.
  log="$scratch/$target.log"
  if ! (cd fuzz && cargo fuzz run --release "$target" "$scratch/$target" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=100000 -print_final_stats=1) >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "== fuzz: $target FAILED; the input is under fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done )' "$log" || true
done
echo "== fuzz: no crash"
