#!/usr/bin/env python3
"""Cross-check the Flink peer's detections against swipeguard's alerts (stdlib only).

    python3 crosscheck.py --flink detections.jsonl --swipeguard alerts.jsonl \
        [--cooldown-ms 600000] [--rapid-fire-cooldown-ms N] [--failed-pin-cooldown-ms N] \
        [--show 10]

--flink is rules.py's output: a JSONL file, or a directory of Flink part files, with one
{"detector","card_id","event_id","ts_ms"} per swipe at which a rule holds (no cool-down).
--swipeguard is swipeguard's alert JSONL (replay --out, or reference.py): `detector`,
`card_id`, `ts` (RFC 3339), `evidence` (oldest first; for these two detectors the LAST id is
the triggering swipe). Alerts of other detectors are ignored (and counted).

What swipeguard should have emitted follows from Flink's detections and the cool-down: per
(detector, card), swipeguard alerts at the first swipe where the rule holds, then suppresses
every detection with ts < alert_ts + cooldown (an event exactly at alert_ts + cooldown fires
again). So the expected alerts are a greedy pass over the detections sorted by (ts_ms,
event_id): keep one when ts_ms >= last kept ts_ms + cooldown.

Comparison is on (detector, card_id, ts_ms): matched, missing (expected, not alerted by
swipeguard), extra (alerted, not expected). For matched alerts the trigger's event id is
compared too.

Ties. swipeguard sees a card's swipes in (event time, event id) order and counts only the
swipes before and at the current one. Flink's OVER ... RANGE window counts every swipe with
the same timestamp as the current one (its peers), so at a tie Flink flags *every* peer once
the peers together reach the threshold, while swipeguard flags the peer at which the count in
id order reaches it - a later one. Both flag the same millisecond, and because the cool-down
depends on time only, the (detector, card, ts) sets still agree exactly; only the trigger id
can differ. Such a trigger difference is reported as "explained by tie order" when swipeguard's
trigger is itself among Flink's detections of that card at that same millisecond; it does not
fail the check. Anything else does: exit status 1 on any missing, extra or unexplained trigger
difference, 0 otherwise (2 on unreadable input).
"""

import argparse
import datetime as dt
import json
import os
import re
import sys
from collections import Counter, defaultdict

DETECTORS = ("rapid_fire", "failed_pin")
RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def parse_ts(v):
    """Alert `ts`: RFC 3339 text (or, leniently, epoch ms) -> epoch milliseconds."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    m = RFC3339.match(str(v))
    if not m:
        raise ValueError(f"bad ts {v!r}")
    y, mo, d, h, mi, s, frac, off = m.groups()
    if off in ("Z", "z"):
        tz = dt.timezone.utc
    else:
        sign = 1 if off[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(off[1:3]), minutes=int(off[4:6])))
    delta = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=tz) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + (int((frac + "00")[:3]) if frac else 0)


def jsonl_files(path):
    if os.path.isdir(path):
        out = []
        for root, dirs, files in os.walk(path):
            # Flink's in-progress files start with '.', rules.py's counts live in _valid-counts/.
            dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
            out += [os.path.join(root, f) for f in files if not f.startswith((".", "_"))]
        return sorted(out)
    return [path]


def read_jsonl(path, what):
    rows = []
    for p in jsonl_files(path):
        with open(p, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise SystemExit(f"crosscheck: {what} {p}:{n}: not JSON ({e})") from None
    return rows


def expected_alerts(detections, cooldowns):
    """Greedy cool-down over Flink's detections. Returns {(det, card, ts): event_id}."""
    by_key = defaultdict(list)
    for d in detections:
        by_key[(d["detector"], d["card_id"])].append((d["ts_ms"], d["event_id"]))
    kept = {}
    for (det, card), rows in by_key.items():
        rows.sort()
        last = None
        for ts, eid in rows:
            if last is None or ts >= last + cooldowns[det]:
                # With a cool-down of 0 several peers at one ms are kept: the key keeps the first.
                kept.setdefault((det, card, ts), eid)
                last = ts
    return kept


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flink", required=True, help="rules.py output (file or directory)")
    ap.add_argument("--swipeguard", required=True, help="swipeguard alerts JSONL")
    ap.add_argument("--cooldown-ms", type=int, default=600_000,
                    help="cool-down of both detectors (default 600000 = 10 min)")
    ap.add_argument("--rapid-fire-cooldown-ms", type=int, help="overrides --cooldown-ms")
    ap.add_argument("--failed-pin-cooldown-ms", type=int, help="overrides --cooldown-ms")
    ap.add_argument("--show", type=int, default=10, help="examples to print per kind")
    ap.add_argument("--json", help="also write the summary as JSON to this file")
    args = ap.parse_args(argv)
    cooldowns = {
        "rapid_fire": args.rapid_fire_cooldown_ms
        if args.rapid_fire_cooldown_ms is not None else args.cooldown_ms,
        "failed_pin": args.failed_pin_cooldown_ms
        if args.failed_pin_cooldown_ms is not None else args.cooldown_ms,
    }

    try:
        flink_rows = read_jsonl(args.flink, "flink")
        sg_rows = read_jsonl(args.swipeguard, "swipeguard")
    except OSError as e:
        print(f"crosscheck: {e}", file=sys.stderr)
        return 2

    detections = []
    for r in flink_rows:
        if r.get("detector") not in DETECTORS:
            print(f"crosscheck: unknown detector in flink output: {r}", file=sys.stderr)
            return 2
        detections.append({"detector": r["detector"], "card_id": str(r["card_id"]),
                           "event_id": str(r["event_id"]), "ts_ms": int(r["ts_ms"])})
    # Every Flink detection at (detector, card, ts): the candidates for a tie explanation.
    flink_at = defaultdict(set)
    for d in detections:
        flink_at[(d["detector"], d["card_id"], d["ts_ms"])].add(d["event_id"])
    expected = expected_alerts(detections, cooldowns)

    other = Counter()
    actual = {}
    dup_alerts = 0
    for a in sg_rows:
        det = a.get("detector")
        if det not in DETECTORS:
            other[det] += 1
            continue
        try:
            key = (det, str(a["card_id"]), parse_ts(a["ts"]))
            trigger = str(a["evidence"][-1])
        except (KeyError, IndexError, TypeError, ValueError) as e:
            print(f"crosscheck: unreadable swipeguard alert ({e}): {a}", file=sys.stderr)
            return 2
        if key in actual:
            # Two alerts at one (detector, card, ms): a restarted daemon's repeat, or a
            # cool-down of 0 at a tie. Compared once, by the first one's trigger.
            dup_alerts += 1
            continue
        actual[key] = trigger

    matched = sorted(set(expected) & set(actual))
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    same_trigger, tie_explained, trigger_mismatch = [], [], []
    for k in matched:
        if expected[k] == actual[k]:
            same_trigger.append(k)
        elif actual[k] in flink_at[k] and len(flink_at[k]) > 1:
            tie_explained.append(k)
        else:
            trigger_mismatch.append(k)

    per = {}
    for det in DETECTORS:
        per[det] = {
            "flink_detections": sum(1 for d in detections if d["detector"] == det),
            "expected_after_cooldown": sum(1 for k in expected if k[0] == det),
            "swipeguard_alerts": sum(1 for k in actual if k[0] == det),
            "matched": sum(1 for k in matched if k[0] == det),
            "missing": sum(1 for k in missing if k[0] == det),
            "extra": sum(1 for k in extra if k[0] == det),
            "trigger_same": sum(1 for k in same_trigger if k[0] == det),
            "trigger_tie_explained": sum(1 for k in tie_explained if k[0] == det),
            "trigger_unexplained": sum(1 for k in trigger_mismatch if k[0] == det),
        }
    total = {f: sum(p[f] for p in per.values()) for f in next(iter(per.values()))}
    ok = not missing and not extra and not trigger_mismatch
    summary = {"ok": ok, "cooldown_ms": cooldowns, "total": total, "per_detector": per,
               "other_detectors_ignored": dict(other), "duplicate_alerts": dup_alerts}

    cols = list(total)
    w = max(len(c) for c in cols)
    print(f"{'':{w}}  {'total':>8}  " + "  ".join(f"{d:>10}" for d in DETECTORS))
    for c in cols:
        print(f"{c:{w}}  {total[c]:>8}  " + "  ".join(f"{per[d][c]:>10}" for d in DETECTORS))
    if other:
        print("ignored alerts of other detectors: "
              + ", ".join(f"{k}={v}" for k, v in sorted(other.items(), key=str)))
    if dup_alerts:
        print(f"swipeguard alerts at an already seen (detector, card, ms), counted once: "
              f"{dup_alerts}")

    def show(title, keys, fmt):
        if not keys:
            return
        print(f"{title} ({len(keys)}):")
        for k in keys[:args.show]:
            print("  " + fmt(k))
        if len(keys) > args.show:
            print(f"  ... {len(keys) - args.show} more")

    def iso(ms):
        t = EPOCH + dt.timedelta(milliseconds=ms)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"

    show("missing (expected from Flink, not alerted by swipeguard)", missing,
         lambda k: f"{k[0]} card={k[1]} ts={iso(k[2])} ({k[2]}) flink_event={expected[k]}")
    show("extra (alerted by swipeguard, not expected from Flink)", extra,
         lambda k: f"{k[0]} card={k[1]} ts={iso(k[2])} ({k[2]}) swipeguard_trigger={actual[k]}"
         + (f" flink_detections_at_ts={sorted(flink_at[k])}" if flink_at[k] else ""))
    show("trigger differs, explained by tie order (same millisecond; not a failure)",
         tie_explained,
         lambda k: f"{k[0]} card={k[1]} ts={iso(k[2])} flink={expected[k]} "
         f"swipeguard={actual[k]} peers_flagged_by_flink={sorted(flink_at[k])}")
    show("trigger differs, unexplained", trigger_mismatch,
         lambda k: f"{k[0]} card={k[1]} ts={iso(k[2])} flink={expected[k]} "
         f"swipeguard={actual[k]}")
    print("crosscheck: " + ("AGREE" if ok else "DISAGREE")
          + f" ({total['matched']} matched, {total['missing']} missing, {total['extra']} extra,"
          f" {total['trigger_tie_explained']} trigger differences explained by tie order,"
          f" {total['trigger_unexplained']} unexplained)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
            fh.write("\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
