#!/usr/bin/env bash
# off_pattern measured on data this project did not write (issue 13; BENCHMARKS.md):
#   bash benches/quality/run.sh
# Installs the SynCCFD generator from PyPI into a virtualenv under target/quality (once),
# generates two data sets with fixed seeds, replays them with the default configuration
# (through deploy/mappings/synccfd.toml, --sort: the generator writes its stolen-card rows out
# of time order), and reports off_pattern's card-level recall, delay and false alerts per
# 1,000 legitimate events (benches/quality/evaluate.py). Then the same for the project's own
# simulated month. Takes about five minutes on 2 cores, most of it generating.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/quality
mkdir -p "$out"
if [ ! -x "$out/venv/bin/python" ]; then
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install --quiet "synccfd==0.1.0"
fi
cargo build --release --quiet
bin=target/release/swipeguard
eval=benches/quality/evaluate.py
# Card-level scenarios of SynCCFD: 3 (card number stolen: a third of two weeks' transactions
# tampered) and 4 (card stolen: five days of spending squeezed into one). Scenarios 1 (any amount
# over a fixed threshold) and 2 (a compromised terminal) are not about a card's own pattern.
scenarios=stolen_card_number,stolen_card
for set in "500 1000 60 42 small" "2000 4000 120 7 large"; do
  read -r customers terminals days seed name <<<"$set"
  csv="$out/synccfd-$name.csv"
  [ -s "$csv" ] || "$out/venv/bin/python" benches/quality/generate_synccfd.py \
    "$customers" "$terminals" "$days" "$seed" "$csv"
  "$bin" replay "$csv" --mapping deploy/mappings/synccfd.toml --sort --no-progress \
    --out "$out/synccfd-$name.alerts.jsonl" --rejects /dev/null >/dev/null 2>&1
  python3 "$eval" --events "$csv" --format synccfd --alerts "$out/synccfd-$name.alerts.jsonl" \
    --scenarios "$scenarios" --name "synccfd $name ($customers customers, $days days, seed $seed)"
done
month="$out/month.jsonl"
[ -s "$month" ] || "$bin" simulate --cards 20000 --days 30 --seed 1 --fraud-share 0.03 \
  --out "$month" 2>/dev/null
"$bin" replay "$month" --no-progress --out "$out/month.alerts.jsonl" --rejects /dev/null \
  >/dev/null 2>&1
python3 "$eval" --events "$month" --alerts "$out/month.alerts.jsonl" \
  --scenarios cash_out,non_medical,lent_card,cash_out_split,lent_card_local \
  --name "own simulate month (20,000 cards, 30 days, seed 1)"
