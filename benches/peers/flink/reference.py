#!/usr/bin/env python3
"""A tiny stdlib reimplementation of swipeguard's `rapid_fire` and `failed_pin` (third opinion).

    python3 reference.py --input swipes.jsonl --out alerts.jsonl [--detections det.jsonl]

It follows the contract in DESIGN §2-§4 and the engine's documented rules, for the two
count rules only, on one partition (a replayed file):

* decode: a line must be a JSON object with event_id, ts, card_id, amount_minor, merchant_id
  and outcome. Ids are strings or integers (taken as decimal text; empty = absent); ts is RFC
  3339 text (fraction truncated to ms) or integer epoch ms, within 2000-01-01..2099-12-31 UTC;
  amount_minor an integer >= 0; outcome "approved" or "declined"; lat/lon, when both given,
  numbers in range. Anything else is rejected (counted by reason) and never seen.
* engine: watermark = newest admitted event time - allowed lateness (30 s), never back. An
  event is late if ts < watermark or (ts, event_id) is not after the last released event; a
  duplicate if its (ts, event_id) is buffered or was just released. Admitted events wait in a
  buffer and are released in (ts, event_id) order once ts <= watermark; end of input drains.
* detectors, per card, on each released event (failed_pin first, then rapid_fire):
  rapid_fire: keep the last 5 swipes no more than 60 000 ms older than this one (inclusive);
  fire when there are 5. failed_pin: the same over bad_pin declines, 3 within 600 000 ms.
  Firing sets a cool-down: a detection with ts < alert_ts + 600 000 ms is suppressed.
* alerts are written like swipeguard's (alert_id = first 128 bits of SHA-256 over detector,
  0x1f, card, 0x1f, first evidence id, in hex), with evidence oldest first, the trigger last.

--detections also writes every detection before the cool-down, in the Flink peer's format
({"detector","card_id","event_id","ts_ms"}), under swipeguard's tie order - so it can be
compared with Flink's output directly (they differ only where a card has several swipes at the
same millisecond; see crosscheck.py).
"""

import argparse
import datetime as dt
import hashlib
import heapq
import json
import re
import sys
from collections import Counter, defaultdict

MIN_TS, MAX_TS = 946_684_800_000, 4_102_444_799_999
RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def parse_rfc3339(s):
    """RFC 3339 text to epoch milliseconds (fraction truncated), or None."""
    m = RFC3339.match(s)
    if not m:
        return None
    y, mo, d, h, mi, sec, frac, off = m.groups()
    try:
        if off in ("Z", "z"):
            tz = dt.timezone.utc
        else:
            sign = 1 if off[0] == "+" else -1
            hh, mm = int(off[1:3]), int(off[4:6])
            if hh > 23 or mm > 59:
                return None
            tz = dt.timezone(sign * dt.timedelta(hours=hh, minutes=mm))
        t = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), tzinfo=tz)
    except ValueError:
        return None
    delta = t - EPOCH
    ms = (delta.days * 86_400 + delta.seconds) * 1000
    if frac:
        ms += int((frac + "00")[:3])
    return ms


def format_ts(ms):
    t = EPOCH + dt.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _text(obj, field):
    """Id or code: str or int (decimal text); empty or null is absent. Raises on wrong type."""
    v = obj.get(field)
    if v is None or v == "":
        return None
    if isinstance(v, str):
        return v
    if _is_int(v):
        return str(v)
    raise Reject("wrong_type")


def _word(obj, field):
    v = obj.get(field)
    if v is None or v == "":
        return None
    if isinstance(v, str):
        return v
    raise Reject("wrong_type")


class Reject(Exception):
    pass


def decode(line):
    """One line to (ts_ms, event_id, card_id, is_bad_pin) or raise Reject(reason)."""
    if len(line.encode("utf-8", "surrogateescape")) > 64 * 1024:
        raise Reject("oversized")
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        raise Reject("not_json")
    if not isinstance(obj, dict):
        raise Reject("not_object")
    event_id = _text(obj, "event_id")
    if event_id is None:
        raise Reject("missing_field")
    ts = obj.get("ts")
    if ts is None:
        raise Reject("missing_field")
    if isinstance(ts, str):
        ts_ms = parse_rfc3339(ts)
        if ts_ms is None:
            raise Reject("bad_timestamp")
    elif _is_int(ts):
        ts_ms = ts
    else:
        raise Reject("bad_timestamp")
    if not MIN_TS <= ts_ms <= MAX_TS:
        raise Reject("timestamp_out_of_range")
    card_id = _text(obj, "card_id")
    if card_id is None:
        raise Reject("missing_field")
    amount = obj.get("amount_minor")
    if amount is None:
        raise Reject("missing_field")
    if isinstance(amount, (int, float)) and not isinstance(amount, bool) and amount < 0:
        raise Reject("negative_amount")
    if not _is_int(amount):
        raise Reject("wrong_type")
    if amount > 10_000_000_000:
        raise Reject("absurd_amount")
    if _text(obj, "merchant_id") is None:
        raise Reject("missing_field")
    outcome = _word(obj, "outcome")
    if outcome is None:
        raise Reject("missing_field")
    if outcome not in ("approved", "declined"):
        raise Reject("bad_value")
    for f in ("account_id", "mcc", "terminal_id", "region", "label"):
        _text(obj, f)
    for f in ("currency", "merchant_kind", "channel"):
        _word(obj, f)
    reason = _word(obj, "decline_reason")
    lat, lon = obj.get("lat"), obj.get("lon")
    for v in (lat, lon):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise Reject("wrong_type")
    if lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise Reject("bad_value")
    return ts_ms, event_id, card_id, outcome == "declined" and reason == "bad_pin"


def alert_id(detector, card, first):
    h = hashlib.sha256()
    h.update(detector.encode() + b"\x1f" + card.encode() + b"\x1f" + first.encode())
    return h.hexdigest()[:32]


class CountRule:
    """`>= k` qualifying swipes of a card within `window` ms (inclusive), with a cool-down."""

    def __init__(self, name, k, window, cooldown):
        self.name, self.k, self.window, self.cooldown = name, k, window, cooldown
        self.recent = defaultdict(list)  # card -> [(ts, id)], oldest first, at most k
        self.quiet_until = {}  # card -> ts from which it may fire again
        self.suppressed = 0

    def observe(self, ts, eid, card, detections, alerts):
        marks = self.recent[card]
        cutoff = ts - self.window
        while marks and marks[0][0] < cutoff:
            marks.pop(0)
        marks.append((ts, eid))
        if len(marks) > self.k:
            marks.pop(0)
        if len(marks) < self.k:
            return
        detections.append({"detector": self.name, "card_id": card, "event_id": eid,
                           "ts_ms": ts})
        if ts < self.quiet_until.get(card, -(1 << 62)):
            self.suppressed += 1
            return
        self.quiet_until[card] = ts + self.cooldown
        evidence = [m[1] for m in marks]
        alerts.append({
            "alert_id": alert_id(self.name, card, evidence[0]),
            "detector": self.name,
            "card_id": card,
            "ts": format_ts(ts),
            "window": {"start": format_ts(marks[0][0]), "end": format_ts(ts)},
            "evidence": evidence,
            "source": "reference.py",
        })


def run(lines, lateness, rapid, pin):
    counts = Counter()
    detections, alerts = [], []
    newest = watermark = -(1 << 62)
    pending = []  # heap of (ts, id, card, bad_pin): pops in (ts, id) order
    pending_keys = set()
    last = None  # (ts, id) of the last released event

    def release(ev):
        nonlocal last
        ts, eid, card, bad_pin = ev
        counts["released"] += 1
        if bad_pin:
            pin.observe(ts, eid, card, detections, alerts)
        rapid.observe(ts, eid, card, detections, alerts)
        last = (ts, eid)

    for line in lines:
        if not line.strip():
            counts["blank"] += 1
            continue
        counts["lines"] += 1
        try:
            ts, eid, card, bad_pin = decode(line)
        except Reject as r:
            counts["rejected:" + str(r)] += 1
            continue
        key = (ts, eid)
        if key == last or key in pending_keys:
            counts["duplicate"] += 1
            continue
        if ts < watermark or (last is not None and key <= last):
            counts["late"] += 1
            continue
        counts["accepted"] += 1
        if ts > newest:
            newest = ts
            watermark = max(watermark, ts - lateness)
        heapq.heappush(pending, (ts, eid, card, bad_pin))
        pending_keys.add(key)
        while pending and pending[0][0] <= watermark:
            ev = heapq.heappop(pending)
            pending_keys.discard((ev[0], ev[1]))
            release(ev)
    while pending:  # end of input: drain in order
        release(heapq.heappop(pending))
    counts["suppressed:rapid_fire"] = rapid.suppressed
    counts["suppressed:failed_pin"] = pin.suppressed
    return detections, alerts, counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", default="-", help="alerts JSONL (default stdout)")
    ap.add_argument("--detections", help="also write every detection before the cool-down")
    ap.add_argument("--lateness-ms", type=int, default=30_000)
    ap.add_argument("--cooldown-ms", type=int, default=600_000,
                    help="cool-down of both rules (default 600000)")
    args = ap.parse_args(argv)

    rapid = CountRule("rapid_fire", 5, 60_000, args.cooldown_ms)
    pin = CountRule("failed_pin", 3, 600_000, args.cooldown_ms)
    with open(args.input, encoding="utf-8", errors="replace") as fh:
        detections, alerts, counts = run(fh, args.lateness_ms, rapid, pin)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    with out:
        for a in alerts:
            out.write(json.dumps(a, separators=(",", ":")) + "\n")
    if args.detections:
        with open(args.detections, "w", encoding="utf-8") as fh:
            for d in detections:
                fh.write(json.dumps(d, separators=(",", ":")) + "\n")
    by = Counter(a["detector"] for a in alerts)
    print("reference: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
          + f"; alerts rapid_fire={by['rapid_fire']} failed_pin={by['failed_pin']}"
          + f"; detections={len(detections)}", file=sys.stderr)


if __name__ == "__main__":
    main()
