#!/usr/bin/env python3
"""Card-level quality of one detector's alerts against the labels of the replayed input.

    evaluate.py --events FILE --format jsonl|synccfd --alerts ALERTS.jsonl
                [--detector off_pattern] [--scenarios a,b,...] [--json OUT]

Definitions (BENCHMARKS.md, issue 13):
- a *compromised card* is a card with at least one event labelled with one of --scenarios (the
  card-level fraud scenarios of the data set);
- it is *caught* when the detector raised at least one alert on it whose evidence holds a
  fraud event (any label but `legit`);
- the *delay* of a caught card runs from its first event of those scenarios to its first such
  alert at or after it: in events of that card (0 = the first fraud event itself alerted) and in
  event time;
- a *false alert* is an alert of the detector whose evidence holds no fraud event; the rate is
  per 1,000 legitimate events of the whole input.

Only the Python standard library is used.
"""

import argparse
import csv
import json
import statistics
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone


def parse_ts(value):
    if isinstance(value, (int, float)):
        return int(value)
    text = value.replace("Z", "+00:00")
    return int(datetime.fromisoformat(text).timestamp() * 1000)


SYNCCFD_LABELS = {
    "0": "legit",
    "1": "high_amount",
    "2": "compromised_terminal",
    "3": "stolen_card_number",
    "4": "stolen_card",
}


def read_events(path, fmt):
    """(event_id, card, ts_ms, label) for every event of the input."""
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                e = json.loads(line)
                yield e["event_id"], e["card_id"], parse_ts(e["ts"]), e.get("label", "legit")
    elif fmt == "synccfd":
        brt = timezone(timedelta(hours=-3))
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                ts = datetime.strptime(row["TX_DATETIME"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=brt)
                yield (
                    row["TRANSACTION_ID"],
                    row["CUSTOMER_ID"],
                    int(ts.timestamp() * 1000),
                    SYNCCFD_LABELS[row["TX_FRAUD_SCENARIO"]],
                )
    else:
        sys.exit(f"unknown format {fmt}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", required=True)
    ap.add_argument("--format", default="jsonl")
    ap.add_argument("--alerts", required=True)
    ap.add_argument("--detector", default="off_pattern")
    ap.add_argument("--scenarios", required=True)
    ap.add_argument("--json")
    ap.add_argument("--name", default="")
    args = ap.parse_args()
    scenarios = set(args.scenarios.split(","))

    label_of = {}
    card_events = defaultdict(list)
    legit = 0
    for event_id, card, ts, label in read_events(args.events, args.format):
        label_of[event_id] = label
        card_events[card].append((ts, event_id, label))
        if label == "legit":
            legit += 1
    for events in card_events.values():
        events.sort()

    first_fraud = {}
    per_scenario_cards = defaultdict(set)
    for card, events in card_events.items():
        for ts, event_id, label in events:
            if label in scenarios:
                per_scenario_cards[label].add(card)
                if card not in first_fraud:
                    first_fraud[card] = (ts, event_id)

    alerts = 0
    false_alerts = 0
    caught = {}
    with open(args.alerts, encoding="utf-8") as f:
        for line in f:
            a = json.loads(line)
            if a["detector"] != args.detector:
                continue
            alerts += 1
            fraud = any(label_of.get(e, "legit") != "legit" for e in a["evidence"])
            if not fraud:
                false_alerts += 1
                continue
            card = a["card_id"]
            if card not in first_fraud:
                continue
            ts = parse_ts(a["ts"])
            start = first_fraud[card][0]
            if ts < start:
                continue
            if card not in caught or ts < caught[card][0]:
                caught[card] = (ts, a["alert_id"])

    delays_events = []
    delays_ms = []
    for card, (ts, _) in caught.items():
        start = first_fraud[card][0]
        between = sum(1 for t, _, _ in card_events[card] if start <= t <= ts)
        delays_events.append(max(between - 1, 0))
        delays_ms.append(ts - start)

    compromised = len(first_fraud)
    result = {
        "name": args.name,
        "detector": args.detector,
        "events": sum(len(v) for v in card_events.values()),
        "legit_events": legit,
        "compromised_cards": compromised,
        "caught_cards": len(caught),
        "card_recall": len(caught) / compromised if compromised else None,
        "per_scenario_card_recall": {
            s: (len(cards & caught.keys()) / len(cards), len(cards))
            for s, cards in sorted(per_scenario_cards.items())
        },
        "median_delay_events": statistics.median(delays_events) if delays_events else None,
        "median_delay_hours": statistics.median(delays_ms) / 3_600_000 if delays_ms else None,
        "alerts": alerts,
        "false_alerts": false_alerts,
        "false_alerts_per_1000_legit": 1000 * false_alerts / legit if legit else None,
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    r = result
    recall = f"{100 * r['card_recall']:.1f}%" if r["card_recall"] is not None else "-"
    print(
        f"{args.name or args.events}: {args.detector} caught {r['caught_cards']} of "
        f"{r['compromised_cards']} compromised cards ({recall}); "
        f"{r['false_alerts_per_1000_legit']:.2f} false alerts per 1,000 legitimate events "
        f"({r['false_alerts']} of {r['alerts']} alerts); median delay "
        f"{r['median_delay_events']} events, {r['median_delay_hours'] and round(r['median_delay_hours'], 1)} h"
    )
    for s, (rec, n) in r["per_scenario_card_recall"].items():
        print(f"  {s:<22} {100 * rec:5.1f}% of {n} cards")


if __name__ == "__main__":
    main()
