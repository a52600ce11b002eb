#!/usr/bin/env bash
# Replay and engine throughput of this tree against another commit, side by side in one run,
# alternating runs so that the machine's noise falls on both (BENCHMARKS.md):
#   bash scripts/bench-vs.sh [COMMIT] [RUNS]      # default: 725ba07 (before stages), 5 runs
# Builds COMMIT in a worktree beside this one (../swipeguard-vs-COMMIT), simulates the 1.04M-event
# month with COMMIT's simulator (so both read the same file), then times
#   - replay, the five card detectors (the other commit's whole engine);
#   - replay, every detector (this tree);
#   - the engine alone on the decoded file, the card detectors (examples/engine_on_file.rs),
# and prints each run and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=${1:-725ba07}
runs=${2:-5}
other=../swipeguard-vs-$commit
[ -d "$other" ] || git worktree add --detach "$other" "$commit" >/dev/null
mkdir -p "$other/examples"
# The engine-only timer is this tree's, adapted to the other's API when it has no stages.
if grep -q only_keys "$other/detectors/src/config.rs"; then
  cp examples/engine_on_file.rs "$other/examples/engine_on_file.rs"
else
  sed '/^\/\/ The card detectors: this tree runs stages/,$d' examples/engine_on_file.rs \
    > "$other/examples/engine_on_file.rs"
  echo 'fn card_only(c: EngineConfig) -> EngineConfig { c }' >> "$other/examples/engine_on_file.rs"
fi
cargo build --release --quiet --bins --example engine_on_file
(cd "$other" && CARGO_TARGET_DIR=target cargo build --release --quiet --bins --example engine_on_file)
new=target/release/swipeguard
old=$other/target/release/swipeguard
data=target/bench-data/vs-$commit-month.jsonl
mkdir -p target/bench-data
[ -s "$data" ] || "$old" simulate --cards 170000 --days 30 --seed 1 --out "$data" 2>/dev/null
card=failed_pin,pin_success_after_failures,rapid_fire,impossible_travel,off_pattern
rate() { sed -E 's/.*\(([0-9,]+) rows\/s\).*/\1/' | tr -d ,; }
declare -A rates=([old_replay]="" [new_replay_card]="" [new_replay_all]="" [old_engine]="" [new_engine]="")
for i in $(seq "$runs"); do
  r=$("$old" replay "$data" --out /dev/null --rejects /dev/null --no-progress 2>&1 | sed -n 1p | rate)
  rates[old_replay]+="$r "
  r=$("$new" replay "$data" --out /dev/null --rejects /dev/null --no-progress --detectors $card 2>&1 | sed -n 1p | rate)
  rates[new_replay_card]+="$r "
  r=$("$new" replay "$data" --out /dev/null --rejects /dev/null --no-progress 2>&1 | sed -n 1p | rate)
  rates[new_replay_all]+="$r "
  r=$("$other/target/release/examples/engine_on_file" "$data" | awk '{print $(NF-1)}' | sort -n | tail -1)
  rates[old_engine]+="$r "
  r=$(target/release/examples/engine_on_file "$data" | awk '{print $(NF-1)}' | sort -n | tail -1)
  rates[new_engine]+="$r "
  echo "run $i of $runs done"
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for k in old_replay new_replay_card new_replay_all old_engine new_engine; do
  printf '%-16s runs: %s median: %s events/s\n' "$k" "${rates[$k]}" "$(echo "${rates[$k]}" | median)"
done
