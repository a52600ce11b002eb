#!/usr/bin/env bash
# Replay throughput on the month with settlement items (issue 16) and the analyst-loop costs
# (issue 17), this tree against another build, alternating runs (BENCHMARKS.md):
#   bash scripts/bench-items.sh OTHER_BINARY [RUNS]
# OTHER_BINARY: a release `swipeguard` of another commit (e.g. built in a worktree). Times
#   - replay, every detector: other, this;
#   - replay, the five card detectors: other, this;
#   - replay, every detector, each with a budget it never reaches (the gate's own cost): this;
#   - diff of the default configuration against that budgeted one (two engines, one pass): this.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: bench-items.sh OTHER_BINARY [RUNS]}
runs=${2:-5}
cargo build --release --quiet --bins
new=target/release/swipeguard
data=target/bench-data/month-items-v2.jsonl
mkdir -p target/bench-data
[ -s "$data" ] || "$new" simulate --cards 170000 --days 30 --seed 1 --out "$data" 2>/dev/null
budget=target/bench-data/budgets.toml
: > "$budget"
for d in failed_pin pin_success_after_failures rapid_fire impossible_travel off_pattern \
  terminal_pin_probe card_lock trace_code_resettled early_refill settle_during_stay; do
  printf '[detectors.%s]\nmax_alerts_per_hour = 1000000\n\n' "$d" >> "$budget"
done
card=failed_pin,pin_success_after_failures,rapid_fire,impossible_travel,off_pattern
rate() { sed -E 's/.*\(([0-9,]+) rows\/s\).*/\1/' | tr -d ,; }
replay() { "$1" replay "$data" --out /dev/null --rejects /dev/null --no-progress "${@:2}" 2>&1 | sed -n 1p | rate; }
declare -A rates=([old_all]="" [new_all]="" [old_card]="" [new_card]="" [new_budget]="" [new_diff]="")
for i in $(seq "$runs"); do
  rates[old_all]+="$(replay "$old") "
  rates[new_all]+="$(replay "$new") "
  rates[old_card]+="$(replay "$old" --detectors $card) "
  rates[new_card]+="$(replay "$new" --detectors $card) "
  rates[new_budget]+="$(replay "$new" --config "$budget") "
  start=$(date +%s.%N)
  "$new" diff "$data" --config /dev/null --config "$budget" --rejects /dev/null --no-progress > /dev/null 2>&1
  end=$(date +%s.%N)
  rows=$(wc -l < "$data")
  rates[new_diff]+="$(echo "$rows / ($end - $start)" | bc) "
  echo "run $i: ${rates[*]}" >&2
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for k in old_all new_all old_card new_card new_budget new_diff; do
  echo "$k: ${rates[$k]}-> median $(echo "${rates[$k]}" | median) events/s"
done
