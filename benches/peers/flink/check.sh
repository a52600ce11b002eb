#!/usr/bin/env bash
# Agreement check on a small generated file: Flink peer vs reference.py, and vs swipeguard
# itself when a binary is at hand. Exits non-zero on any unexplained difference.
#
#   benches/peers/flink/check.sh [WORK_DIR]
#
# Environment:
#   FLINK_VENV      the venv install.sh made (it is run first; a no-op when already there)
#   SWIPEGUARD_BIN  swipeguard binary (default: target/release/swipeguard when it exists;
#                   the swipeguard comparison is skipped without one)
#   SEED            generator seed (default 7)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
work="${1:-$(mktemp -d -t flink-peer-check.XXXXXX)}"
mkdir -p "$work"
FLINK_VENV="${FLINK_VENV:-$HOME/.cache/swipeguard/flink-venv}"
export FLINK_VENV

"$here/install.sh"

echo "== sample"
python3 "$here/gen_sample.py" --seed "${SEED:-7}" --out "$work/sample.jsonl"

echo "== flink"
"$FLINK_VENV/bin/python" "$here/rules.py" --input "$work/sample.jsonl" \
  --output "$work/flink.jsonl" --timing "$work/flink-timing.json" 2>"$work/flink.log" || {
  tail -n 40 "$work/flink.log" >&2
  exit 1
}
grep '^flink peer:' "$work/flink.log"

echo "== reference"
python3 "$here/reference.py" --input "$work/sample.jsonl" --out "$work/reference.jsonl" \
  --detections "$work/reference-detections.jsonl"

echo "== crosscheck: flink vs reference.py"
python3 "$here/crosscheck.py" --flink "$work/flink.jsonl" --swipeguard "$work/reference.jsonl" \
  --show 3

bin="${SWIPEGUARD_BIN:-$repo/target/release/swipeguard}"
if [[ -x "$bin" ]]; then
  echo "== swipeguard replay ($bin)"
  "$bin" replay "$work/sample.jsonl" --detectors rapid_fire,failed_pin --no-progress \
    --out "$work/swipeguard.jsonl" --rejects "$work/swipeguard-rejects.jsonl" \
    2>"$work/swipeguard.log"
  echo "== crosscheck: flink vs swipeguard"
  python3 "$here/crosscheck.py" --flink "$work/flink.jsonl" \
    --swipeguard "$work/swipeguard.jsonl" --show 3
else
  echo "== no swipeguard binary at $bin: swipeguard comparison skipped"
fi
echo "flink peer check: OK (work dir $work)"
