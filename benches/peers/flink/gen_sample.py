#!/usr/bin/env python3
"""Deterministic sample of card swipes (JSONL, DESIGN §2) for the Flink cross-check.

Stdlib only. The same --seed always gives byte-identical output. The file exercises the two
rules the Flink peer implements (rapid_fire: >= 5 swipes in 60 s; failed_pin: >= 3 bad_pin
declines in 10 min, both inclusive) with:

  * ordinary swipes on many cards (a handful per card over the day, mixed outcomes);
  * bursts of 5-7 swipes within 60 s, and near misses (4 swipes in 10 s; 5 over 61 s);
  * PIN guessing with 3-5 bad_pin declines within 10 min, some followed by an approval,
    and near misses (3 over 10 min + 1 ms; 2 bad_pin plus other declines);
  * exact boundaries: 5 swipes whose first and last are exactly 60 000 ms apart, 3 bad_pin
    exactly 600 000 ms apart (both must fire), a second burst exactly one cool-down (10 min)
    after an alert (fires again) and one a millisecond earlier (suppressed);
  * ties: swipes of one card with identical timestamps straddling the threshold, where Flink's
    RANGE window counts all peers but swipeguard counts only those before in event-id order;
  * every `ts` form the format allows: RFC 3339 with +08:00, with Z, other offsets, without
    fraction, with a 6-digit fraction, and integer epoch milliseconds;
  * optional fields (region, lat/lon, channel, terminal_id, label) that must be ignored;
  * a few invalid lines (not JSON, missing fields, bad timestamp) that must be skipped.

Lines are written in event-time order plus a jitter of 0..4999 ms (so at most < 5 s out of
order), far inside the 30 s allowed lateness of both engines.

    python3 gen_sample.py --out sample.jsonl [--seed 7] [--cards 400] [--hours 8]
"""

import argparse
import datetime as dt
import json
import random
import sys

BASE_MS = 1_772_668_800_000  # 2026-03-05T00:00:00Z = 08:00 in UTC+8
MIN = 60_000
KINDS = ["hospital", "clinic", "pharmacy", "other"]
CHANNELS = ["chip", "swipe", "contactless", "qr", "online"]
OTHER_DECLINES = ["insufficient_funds", "card_locked", "expired", "other"]


def fmt_ts(ms, rng):
    """Event time in one of the forms DESIGN §2 allows, chosen at random."""
    r = rng.random()
    if r < 0.06:
        return ms  # integer epoch milliseconds
    if r < 0.55:
        tz = dt.timezone(dt.timedelta(hours=8))
    elif r < 0.80:
        tz = dt.timezone.utc
    elif r < 0.90:
        tz = dt.timezone(dt.timedelta(hours=-5, minutes=-30))
    else:
        tz = dt.timezone(dt.timedelta(hours=5, minutes=45))
    t = dt.datetime.fromtimestamp(ms / 1000, tz)
    if r < 0.80 and rng.random() < 0.05:
        if ms % 1000 == 0:
            body = t.strftime("%Y-%m-%dT%H:%M:%S")  # no fraction at all
        else:
            body = t.strftime("%Y-%m-%dT%H:%M:%S.%f")  # microsecond digits
    else:
        body = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}"
    off = t.strftime("%z")
    off = "Z" if off == "+0000" else off[:3] + ":" + off[3:]
    return body + off


class Gen:
    def __init__(self, seed, cards, hours):
        self.rng = random.Random(seed)
        self.span = hours * 3600_000
        self.events = []  # (ms, card, outcome, reason, label, tie_rank)
        self.cards = [f"c{n:05d}" for n in range(cards)]
        self.merchants = [f"m{n:04d}" for n in range(300)]
        self.next_special = 0

    def special_card(self, kind):
        self.next_special += 1
        return f"x{self.next_special:04d}-{kind}"

    def add(self, ms, card, outcome="approved", reason=None, label="legit"):
        self.events.append((ms, card, outcome, reason, label))

    def start(self, margin=30 * MIN):
        return BASE_MS + self.rng.randrange(0, self.span - margin)

    # ---- scenarios -------------------------------------------------------------------------
    def ordinary(self):
        rng = self.rng
        for card in self.cards:
            n = rng.randint(1, 8)
            for _ in range(n):
                r = rng.random()
                if r < 0.90:
                    self.add(self.start(0), card)
                elif r < 0.95:
                    self.add(self.start(0), card, "declined", rng.choice(OTHER_DECLINES))
                else:
                    self.add(self.start(0), card, "declined", "bad_pin")  # lone wrong PIN

    def bursts(self, n):
        rng = self.rng
        for _ in range(n):
            card = rng.choice(self.cards) if rng.random() < 0.5 else self.special_card("burst")
            t0 = self.start()
            k = rng.randint(5, 7)
            offs = sorted(rng.randrange(0, 60_001) for _ in range(k - 1))
            for o in [0] + offs:
                outcome = "approved" if rng.random() < 0.8 else "declined"
                reason = None if outcome == "approved" else rng.choice(OTHER_DECLINES)
                self.add(t0 + o, card, outcome, reason, "rapid_fire")

    def near_miss_bursts(self, n):
        rng = self.rng
        for i in range(n):
            card = self.special_card("nearburst")
            t0 = self.start()
            if i % 2 == 0:
                for j in range(4):  # 4 swipes in 10 s: never 5
                    self.add(t0 + j * 2500, card)
            else:
                for j in range(5):  # 5 swipes over 61 s: 15 250 ms apart
                    self.add(t0 + j * 15_250, card)

    def pin_guessing(self, n):
        rng = self.rng
        for _ in range(n):
            card = rng.choice(self.cards) if rng.random() < 0.5 else self.special_card("pin")
            t0 = self.start()
            k = rng.randint(3, 5)
            offs = sorted(rng.randrange(0, 600_001) for _ in range(k - 1))
            for o in [0] + offs:
                self.add(t0 + o, card, "declined", "bad_pin", "failed_pin")
            if rng.random() < 0.5:  # the guess succeeds
                self.add(t0 + offs[-1] + rng.randrange(1000, 120_000), card, label="failed_pin")

    def near_miss_pins(self, n):
        for i in range(n):
            card = self.special_card("nearpin")
            t0 = self.start()
            if i % 2 == 0:  # 3 bad_pin over 10 min + 1 ms
                for o in (0, 300_000, 600_001):
                    self.add(t0 + o, card, "declined", "bad_pin")
            else:  # 2 bad_pin and other declines in between
                self.add(t0, card, "declined", "bad_pin")
                self.add(t0 + 60_000, card, "declined", "insufficient_funds")
                self.add(t0 + 120_000, card, "declined", "bad_pin")
                self.add(t0 + 180_000, card, "declined", "expired")

    def boundaries(self, n):
        for _ in range(n):
            # 5 swipes, first to last exactly 60 000 ms: fires (inclusive window).
            card = self.special_card("edge60")
            t0 = self.start()
            for o in (0, 10_000, 30_000, 45_000, 60_000):
                self.add(t0 + o, card, label="rapid_fire")
            # 3 bad_pin, first to last exactly 600 000 ms: fires.
            card = self.special_card("edge10m")
            t0 = self.start()
            for o in (0, 599_999, 600_000):
                self.add(t0 + o, card, "declined", "bad_pin", "failed_pin")
            # Burst, then another burst whose 5th swipe is exactly one cool-down after the
            # alert (fires again), and one whose 5th is 1 ms earlier (suppressed; its 6th, 1 ms
            # later, lands exactly on the cool-down end and fires).
            for delta, extra in ((600_000, 0), (599_999, 1)):
                card = self.special_card("cooldown")
                t0 = self.start(margin=60 * MIN)
                for o in (0, 1000, 2000, 3000, 4000):
                    self.add(t0 + o, card, label="rapid_fire")
                alert = t0 + 4000
                second = [alert + delta - 4000 + j * 1000 for j in range(5)]
                if extra:
                    second.append(second[-1] + 1)
                for ms in second:
                    self.add(ms, card, label="rapid_fire")
            # Same for failed_pin: second run's 3rd failure exactly 10 min after the alert.
            card = self.special_card("pincool")
            t0 = self.start(margin=60 * MIN)
            for o in (0, 60_000, 120_000):
                self.add(t0 + o, card, "declined", "bad_pin", "failed_pin")
            for o in (600_000, 660_000, 720_000):  # alert at 120 000; 720 000 = alert + 10 min
                self.add(t0 + o, card, "declined", "bad_pin", "failed_pin")

    def ties(self, n):
        rng = self.rng
        for i in range(n):
            card = self.special_card("tie")
            t0 = self.start()
            if i % 3 == 0:
                # 3 swipes, then 2 at the same instant: the 5th in (ts, id) order completes the
                # count; Flink's RANGE window counts both peers at both rows.
                for o in (0, 5000, 10_000, 20_000, 20_000):
                    self.add(t0 + o, card, label="rapid_fire")
            elif i % 3 == 1:
                # 1 bad_pin, then 2 more at the same instant: the 3rd completes the count.
                for o in (0, 200_000, 200_000):
                    self.add(t0 + o, card, "declined", "bad_pin", "failed_pin")
            else:
                # All five at one instant.
                for _ in range(5):
                    self.add(t0, card, label="rapid_fire")

    # ---- output ----------------------------------------------------------------------------
    def lines(self):
        rng = self.rng
        evs = sorted(self.events)
        # Event ids follow event time (with a random order among equal times), so that the
        # (ts, event_id) order is the natural one; arrival order gets the jitter.
        order = sorted(range(len(evs)), key=lambda i: (evs[i][0], rng.random()))
        rows = []
        for seq, i in enumerate(order, 1):
            ms, card, outcome, reason, label = evs[i]
            e = {
                "event_id": f"e-{seq:07d}",
                "ts": fmt_ts(ms, rng),
                "card_id": card,
                "amount_minor": rng.randrange(100, 200_000),
                "merchant_id": rng.choice(self.merchants),
                "merchant_kind": rng.choice(KINDS),
                "outcome": outcome,
            }
            if reason:
                e["decline_reason"] = reason
            if rng.random() < 0.7:
                e["region"] = rng.choice(["110105", "310104", "440305", "510107"])
                e["channel"] = rng.choice(CHANNELS)
                e["terminal_id"] = f"t{rng.randrange(1000):04d}"
            if rng.random() < 0.3:
                e["lat"] = round(39.9 + rng.uniform(-0.2, 0.2), 5)
                e["lon"] = round(116.4 + rng.uniform(-0.2, 0.2), 5)
            e["label"] = label
            arrival = ms + rng.randrange(0, 5000)
            rows.append((arrival, seq, json.dumps(e, separators=(",", ":"))))
        # A few invalid lines, placed among the valid ones.
        some = BASE_MS + self.span // 2
        bad = [
            "this is not json",
            '{"event_id":"bad-1","ts":"2026-03-05T14:00:00.000+08:00"',  # truncated
            json.dumps({"event_id": "bad-2", "ts": "2026-03-05T14:00:00.000+08:00",
                        "card_id": "c00001", "merchant_id": "m0001", "outcome": "approved"}),
            json.dumps({"event_id": "bad-3", "ts": "yesterday", "card_id": "c00001",
                        "amount_minor": 100, "merchant_id": "m0001", "outcome": "approved"}),
            json.dumps({"event_id": "bad-4", "ts": "2026-03-05T14:00:00.000+08:00",
                        "amount_minor": 100, "merchant_id": "m0001", "outcome": "approved"}),
            json.dumps({"event_id": "bad-5", "ts": "2026-03-05T14:00:00.000+08:00",
                        "card_id": "c00001", "amount_minor": 100, "merchant_id": "m0001",
                        "outcome": "maybe"}),
            json.dumps({"ts": "2026-03-05T14:00:00.000+08:00", "card_id": "c00001",
                        "amount_minor": 100, "merchant_id": "m0001", "outcome": "approved"}),
            "",
        ]
        for j, line in enumerate(bad):
            rows.append((some + j * 1000, -1, line))
        rows.sort(key=lambda r: (r[0], r[1]))
        return [r[2] for r in rows]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="-", help="output file (default stdout)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cards", type=int, default=600, help="ordinary cards")
    ap.add_argument("--hours", type=int, default=8, help="span of event time")
    ap.add_argument("--bursts", type=int, default=60)
    ap.add_argument("--pins", type=int, default=40)
    args = ap.parse_args(argv)

    g = Gen(args.seed, args.cards, args.hours)
    g.ordinary()
    g.bursts(args.bursts)
    g.near_miss_bursts(10)
    g.pin_guessing(args.pins)
    g.near_miss_pins(10)
    g.boundaries(4)
    g.ties(9)
    lines = g.lines()
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    with out:
        for line in lines:
            out.write(line + "\n")
    if args.out != "-":
        print(f"gen_sample: {len(lines)} lines -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
