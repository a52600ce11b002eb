#!/usr/bin/env bash
# Replay throughput, JSONL -> alerts, all detectors, one process (BENCHMARKS.md).
# Simulates ~1M events once (cached under target/bench-data), then replays them RUNS times and
# prints each run and the median events/s.
#   bash scripts/bench-replay.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo build --release --quiet
bin=target/release/swipeguard
data=target/bench-data/month-170k-cards.jsonl
mkdir -p target/bench-data
if [ ! -s "$data" ]; then
  "$bin" simulate --cards 170000 --days 30 --seed 1 --out "$data"
fi
rates=()
for i in $(seq "$runs"); do
  summary=$("$bin" replay "$data" --out /dev/null --rejects /dev/null --no-progress 2>&1)
  line=${summary%%$'\n'*}
  echo "run $i: $line"
  rate=$(sed -E 's/.*\(([0-9,]+) rows\/s\).*/\1/' <<<"$line" | tr -d ,)
  rates+=("$rate")
done
printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print "median events/s:", a[int((NR+1)/2)]}'
