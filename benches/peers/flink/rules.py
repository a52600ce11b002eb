#!/usr/bin/env python3
"""swipeguard's Apache Flink peer: `rapid_fire` and `failed_pin` as a PyFlink SQL job.

Run it with the interpreter of the venv that install.sh makes:

    $FLINK_VENV/bin/python rules.py --input swipes.jsonl --output detections.jsonl \
        [--parallelism 1] [--timing timing.json] [--no-count]

Input: JSONL swipes (DESIGN §2), read by Flink's filesystem connector and JSON format.
Output: one JSON line per *detection* - every swipe at which a rule holds, with no cool-down:

    {"detector":"rapid_fire","card_id":"c1","event_id":"e-0000042","ts_ms":1772690431000}

--output ending in .jsonl/.json names a file: Flink writes part files into a scratch directory
beside it, which is merged into the file (lines sorted) after the job and removed. Any other
--output names a directory that Flink's part files go into (it must be empty or absent); the
valid-row counts then land in its subdirectory _valid-counts/, which crosscheck.py skips.

The rules (all windows inclusive, in event time):
  rapid_fire  every swipe (any outcome) at which its card has >= 5 swipes whose time lies in
              [t - 60 000 ms, t]
  failed_pin  every `declined` + `bad_pin` swipe at which its card has >= 3 such swipes in
              [t - 600 000 ms, t]
The cool-down (one alert per burst) is *not* applied here: Flink SQL has no natural form for
"suppress for 10 min after an emitted row" short of a stateful process function, and the
cool-down is a cheap greedy pass over few rows; crosscheck.py applies it to these detections.

Which Flink form, and why it is the fairest to Flink
----------------------------------------------------
Both rules are a bounded, event-time OVER aggregate:

    COUNT(*) OVER (PARTITION BY card_id ORDER BY rt
                   RANGE BETWEEN INTERVAL '60' SECOND PRECEDING AND CURRENT ROW)

* It is the textbook Flink SQL form of "count of the last W of event time, per key", and the
  planner runs it as one keyed operator (RowTimeRangeBoundedPrecedingFunction) that keeps the
  window's rows in keyed state, sorts by the watermark and updates the count incrementally.
  Everything runs inside the JVM: no Python UDF, no Python worker process (that would make
  Flink look slow for reasons that have nothing to do with Flink).
* RANGE ... PRECEDING AND CURRENT ROW is inclusive at both ends, exactly the definition above.
  MATCH_RECOGNIZE (flink-cep) would also work but is heavier (an NFA and a shared buffer per
  key) and its WITHIN clause excludes the boundary (a burst exactly 60 s long would be lost
  unless the interval were padded by 1 ms); HOP windows only approximate a sliding window.
* `failed_pin` runs its OVER on the bad_pin swipes only (filtered first), so its state holds
  just those rows, not every swipe of the last 10 minutes.
* One source scan, one timestamp parse and one watermark assigner feed both branches and the
  count sink (table.optimizer.reuse-optimize-block-with-digest-enabled; without it the planner
  repeats the parse per branch - see --explain); the two detection streams are UNION ALL'ed
  into one sink. Object reuse is on, as in Flink's own Nexmark setups. State is the default
  heap backend, checkpointing off (a bounded file; swipeguard's replay does not snapshot).

Ties: RANGE counts every row with the same timestamp as the current one (its *peers*), even
those that swipeguard, which orders a card's swipes by (event time, event id), sees later. So at
a tie Flink may flag the first of several same-instant swipes where swipeguard flags a later
one; the timestamp is the same. crosscheck.py reports such cases as explained by tie order.

Time: `ts` is RFC 3339 text (any offset or Z, any number of fraction digits, truncated to ms) or
integer epoch milliseconds; it is parsed with built-in SQL functions into a TIMESTAMP(3) in UTC
(the session time zone is set to UTC). The watermark is bounded out-of-orderness of 30 s, the
same as swipeguard's default allowed lateness. Flink drops a row whose time is at or before the
last timestamp its OVER operator has already processed (late rows); swipeguard counts and
rejects late rows, so on input within the lateness both see the same rows. Flink emits its
watermark periodically (every 200 ms of wall time), so *which* rows beyond the lateness it
drops is not deterministic - on a small file it may drop none at all, the watermark having not
been emitted yet; swipeguard's rule is. (The source's 'scan.watermark.emit.strategy' =
'on-event' has no effect on the filesystem source, and pipeline.auto-watermark-interval = 0
turns periodic watermarks off altogether.) Compare on input within the lateness; rows late
for Flink are still counted as valid by the count sink.

Invalid lines: the JSON format runs with ignore-parse-errors, so a line that is not JSON is
skipped by the format; a row missing a required field (event_id, ts, card_id, amount_minor,
merchant_id, outcome) or with an unparseable/out-of-range ts, a negative amount, an unknown
outcome or lat/lon out of range is filtered out, as swipeguard rejects it. To count them
without a non-append global aggregate (the filesystem sink takes only appends), a second
sink counts the valid rows per UTC day with a TUMBLE window; after the job, skipped = non-blank
lines - valid rows. --no-count leaves that sink out (measured cost: see README.md).
Known divergences on malformed input only (checked): Flink's JSON format reads a JSON string
"100" or a fraction 99.5 as amount_minor and a string "1772690405000" as epoch-ms ts, where
swipeguard rejects the wrong JSON type (a STRING column cannot tell "100" from 100), and its
timestamp cast is lenient about impossible dates (2026-02-30 -> 2026-02-28).

Timing: the script writes one line to stderr, `flink-peer-timing {json}`, and --timing FILE,
with wall-clock epoch seconds at: process start (before importing pyflink), environment ready
(JVM gateway up), job submitted, job finished, output merged. Flink's start-up (JVM, planner,
mini-cluster, deployment, teardown) costs 8-9 s here on a quiet machine and 12-15 s while
other work competes for the 2 cores, and "when did the first record get processed" is not
observable without instrumenting Flink, so the benchmark driver (bench.py) instead runs the
identical job over a one-line input and reports steady-state time = total wall time of the
real run - total wall time of the one-line run. See README.md.
"""

import time

T_PROCESS_START = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402

RAPID_MIN, RAPID_WINDOW = 5, "INTERVAL '60' SECOND"
PIN_MIN, PIN_WINDOW = 3, "INTERVAL '10' MINUTE"  # '600' SECOND exceeds SECOND(2) precision
LATENESS = "INTERVAL '30' SECOND"
# Accepted event times, as swipeguard's codec: 2000-01-01T00:00:00Z ..= 2099-12-31T23:59:59.999Z
MIN_TS, MAX_TS = "2000-01-01 00:00:00.000", "2099-12-31 23:59:59.999"
MIN_MS, MAX_MS = 946_684_800_000, 4_102_444_799_999


def sql_literal(s):
    return "'" + s.replace("'", "''") + "'"


# `ts` -> TIMESTAMP(3) in UTC, with built-in functions only (no Python UDF). RFC 3339 text is
# split into the local date-time and the offset: the last char Z/z means UTC, otherwise the last
# six chars must be +HH:MM or -HH:MM. The local part (at least yyyy-MM-ddTHH:mm:ss, separator T,
# t or space, year 20xx) is cast with Flink's own parser, which truncates the fraction to
# milliseconds; the offset is then subtracted. Text whose 5th char is not '-' is tried as epoch
# milliseconds. TRY_CAST yields NULL for anything that does not parse.
TS_EXPR = f"""
CASE
  WHEN SUBSTRING(ts FROM 5 FOR 1) <> '-' THEN
    CASE WHEN TRY_CAST(ts AS BIGINT) BETWEEN {MIN_MS} AND {MAX_MS} THEN
      CAST(TO_TIMESTAMP_LTZ(TRY_CAST(ts AS BIGINT), 3) AS TIMESTAMP(3)) END
  WHEN SUBSTRING(ts FROM 1 FOR 2) <> '20' OR SUBSTRING(ts FROM 11 FOR 1) NOT IN ('T', 't', ' ')
    THEN CAST(NULL AS TIMESTAMP(3))
  WHEN RIGHT(ts, 1) IN ('Z', 'z') AND CHAR_LENGTH(ts) >= 20 THEN
    TRY_CAST(OVERLAY(SUBSTRING(ts FROM 1 FOR CHAR_LENGTH(ts) - 1) PLACING ' ' FROM 11 FOR 1)
             AS TIMESTAMP(3))
  WHEN CHAR_LENGTH(ts) >= 25 AND SUBSTRING(ts FROM CHAR_LENGTH(ts) - 2 FOR 1) = ':'
       AND SUBSTRING(ts FROM CHAR_LENGTH(ts) - 5 FOR 1) IN ('+', '-') THEN
    TIMESTAMPADD(MINUTE,
      (CASE WHEN SUBSTRING(ts FROM CHAR_LENGTH(ts) - 5 FOR 1) = '+' THEN -1 ELSE 1 END)
      * (TRY_CAST(SUBSTRING(ts FROM CHAR_LENGTH(ts) - 4 FOR 2) AS INT) * 60
         + TRY_CAST(SUBSTRING(ts FROM CHAR_LENGTH(ts) - 1 FOR 2) AS INT)),
      TRY_CAST(OVERLAY(SUBSTRING(ts FROM 1 FOR CHAR_LENGTH(ts) - 6) PLACING ' ' FROM 11 FOR 1)
               AS TIMESTAMP(3)))
END"""

# Flink's watermark assigner fails the job on a NULL rowtime ("RowTime field should not be
# null"), and a row that swipeguard rejects must not move the watermark either (it is never
# admitted there). So the rowtime of every row that is not a valid event - a required field
# missing or empty (NULL <> '' is NULL), a negative amount, an unknown outcome, lat/lon out of
# range, a ts that does not parse - is a sentinel far in the past (1970), which cannot raise
# the watermark, and the view below filters the sentinel out together with out-of-range times.
SENTINEL = "TIMESTAMP '1970-01-01 00:00:00'"
RT_EXPR = f"""
COALESCE(
  CASE WHEN event_id <> '' AND card_id <> '' AND merchant_id <> ''
        AND amount_minor >= 0 AND outcome IN ('approved', 'declined')
        AND (lat IS NULL OR lon IS NULL OR (lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180))
  THEN {TS_EXPR} END,
  {SENTINEL})"""

# TIMESTAMP(3) (UTC) -> epoch milliseconds; only evaluated on the few detection rows.
# (TIMESTAMPDIFF returns INT: widen before multiplying, or it overflows.)
TS_MS_EXPR = ("CAST(TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', rt) AS BIGINT) * 1000"
              " + EXTRACT(MILLISECOND FROM rt)")


def build_statements(input_path, det_dir, stats_dir, count):
    ddl_source = f"""
CREATE TEMPORARY TABLE swipes_raw (
  event_id STRING,
  ts STRING,
  card_id STRING,
  amount_minor BIGINT,
  merchant_id STRING,
  outcome STRING,
  decline_reason STRING,
  lat DOUBLE,
  lon DOUBLE,
  rt AS {RT_EXPR},
  WATERMARK FOR rt AS rt - {LATENESS}
) WITH (
  'connector' = 'filesystem',
  'path' = {sql_literal(input_path)},
  'format' = 'json',
  'json.ignore-parse-errors' = 'true',
  'json.fail-on-missing-field' = 'false'
)"""
    # Valid events only: invalid rows carry the 1970 sentinel rowtime (see RT_EXPR).
    view = f"""
CREATE TEMPORARY VIEW swipes AS
SELECT card_id, event_id, outcome, decline_reason, rt
FROM swipes_raw
WHERE rt BETWEEN TIMESTAMP '{MIN_TS}' AND TIMESTAMP '{MAX_TS}'"""
    ddl_sink = f"""
CREATE TEMPORARY TABLE detections (
  detector STRING,
  card_id STRING,
  event_id STRING,
  ts_ms BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = {sql_literal(det_dir)},
  'format' = 'json'
)"""
    insert = f"""
INSERT INTO detections
SELECT 'rapid_fire', card_id, event_id, {TS_MS_EXPR}
FROM (
  SELECT card_id, event_id, rt,
         COUNT(*) OVER (PARTITION BY card_id ORDER BY rt
           RANGE BETWEEN {RAPID_WINDOW} PRECEDING AND CURRENT ROW) AS n
  FROM swipes
)
WHERE n >= {RAPID_MIN}
UNION ALL
SELECT 'failed_pin', card_id, event_id, {TS_MS_EXPR}
FROM (
  SELECT card_id, event_id, rt,
         COUNT(*) OVER (PARTITION BY card_id ORDER BY rt
           RANGE BETWEEN {PIN_WINDOW} PRECEDING AND CURRENT ROW) AS n
  FROM swipes
  WHERE outcome = 'declined' AND decline_reason = 'bad_pin'
)
WHERE n >= {PIN_MIN}"""
    ddls = [ddl_source, view, ddl_sink]
    inserts = [insert]
    if count:
        ddls.append(f"""
CREATE TEMPORARY TABLE valid_counts (
  day_start TIMESTAMP(3),
  events BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = {sql_literal(stats_dir)},
  'format' = 'json'
)""")
        inserts.append("""
INSERT INTO valid_counts
SELECT window_start, COUNT(*)
FROM TABLE(TUMBLE(TABLE swipes, DESCRIPTOR(rt), INTERVAL '1' DAY))
GROUP BY window_start, window_end""")
    return ddls, inserts


def part_files(d):
    """Finished part files of a filesystem sink directory (in-progress files start with '.');
    files and subdirectories starting with '.' or '_' are not detections."""
    out = []
    for root, dirs, files in os.walk(d):
        dirs[:] = [x for x in dirs if not x.startswith((".", "_"))]
        for f in files:
            if not f.startswith(".") and not f.startswith("_"):
                out.append(os.path.join(root, f))
    return sorted(out)


def read_lines(d):
    lines = []
    for p in part_files(d):
        with open(p, encoding="utf-8") as fh:
            lines.extend(line.rstrip("\n") for line in fh if line.strip())
    return lines


def count_nonblank_lines(path):
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                n += 1
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description="swipeguard's Flink peer (rapid_fire, failed_pin)")
    ap.add_argument("--input", required=True, help="JSONL swipes file")
    ap.add_argument("--output", required=True,
                    help="detections: a .jsonl/.json file, or a directory for part files")
    ap.add_argument("--parallelism", type=int, default=1)
    ap.add_argument("--timing", help="also write the timing record (JSON) to this file")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Flink configuration, applied last (repeatable)")
    ap.add_argument("--explain", action="store_true",
                    help="print Flink's plan for the job and exit without running it")
    ap.add_argument("--no-count", action="store_true",
                    help="leave out the sink that counts valid rows (skipped lines unknown)")
    ap.add_argument("--input-lines", type=int, metavar="N",
                    help="the input's non-blank line count, when the caller already knows it: "
                    "saves re-reading the input after the job (not Flink's work; about 0.6 s "
                    "per million lines here), which would otherwise count in the wall time")
    args = ap.parse_args(argv)

    input_path = os.path.abspath(args.input)
    if not os.path.isfile(input_path):
        ap.error(f"no such input file: {args.input}")
    out = os.path.abspath(args.output)
    to_file = out.endswith(".jsonl") or out.endswith(".json")
    if to_file:
        work = out + ".flink-tmp"
        if os.path.exists(work):
            shutil.rmtree(work)  # our own scratch directory from an earlier run
        det_dir = os.path.join(work, "detections")
    else:
        if os.path.isdir(out) and os.listdir(out):
            ap.error(f"output directory is not empty: {args.output}")
        work = out
        det_dir = out
    # The valid-row counts go to a '_'-prefixed subdirectory, which readers of the detections
    # (read_lines here, crosscheck.py) skip.
    stats_dir = os.path.join(work if to_file else det_dir, "_valid-counts")
    os.makedirs(det_dir, exist_ok=True)

    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_import = time.time()
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    conf.set("table.local-time-zone", "UTC")
    conf.set("parallelism.default", str(args.parallelism))
    conf.set("pipeline.name", "swipeguard-flink-peer")
    # Tuning that is fair to Flink (both are what Flink's own Nexmark benchmark setups use or
    # what its docs recommend for SQL jobs):
    # * object reuse: the SQL runtime is written for it; saves a copy per record per chained
    #   operator;
    # * digest-based block reuse: without it the planner pushes a different projection into
    #   each of the three branches (rapid_fire, failed_pin, counts) and so parses every
    #   timestamp and assigns watermarks three times; with it the scan, the parse and the
    #   watermark assigner run once and feed all three (see --explain).
    conf.set("pipeline.object-reuse", "true")
    conf.set("table.optimizer.reuse-optimize-block-with-digest-enabled", "true")
    for kv in args.conf:
        k, _, v = kv.partition("=")
        conf.set(k.strip(), v.strip())
    t_env = time.time()

    ddls, inserts = build_statements(input_path, det_dir, stats_dir, not args.no_count)
    for ddl in ddls:
        env.execute_sql(ddl)
    stmts = env.create_statement_set()
    for ins in inserts:
        stmts.add_insert_sql(ins)
    if args.explain:
        print(stmts.explain())
        if to_file:
            shutil.rmtree(work)
        return
    t_submit = time.time()
    result = stmts.execute()
    result.wait()
    t_done = time.time()

    # Everything below is after the job: not part of Flink's work.
    lines = read_lines(det_dir)
    valid = None
    if not args.no_count:
        valid = 0
        for line in read_lines(stats_dir):
            valid += json.loads(line)["events"]
    if to_file:
        lines.sort()
        with open(out, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")
        shutil.rmtree(work)
    t_end = time.time()

    nonblank = (args.input_lines if args.input_lines is not None
                else count_nonblank_lines(input_path))
    timing = {
        "input": input_path,
        "parallelism": args.parallelism,
        "input_lines": nonblank,
        "valid_events": valid,
        "skipped_lines": None if valid is None else nonblank - valid,
        "detections": len(lines),
        "t_process_start": T_PROCESS_START,
        "t_pyflink_imported": t_import,
        "t_env_ready": t_env,
        "t_job_submitted": t_submit,
        "t_job_done": t_done,
        "t_output_written": t_end,
        "env_setup_s": round(t_env - T_PROCESS_START, 3),
        "job_s": round(t_done - t_submit, 3),
        "script_s": round(t_end - T_PROCESS_START, 3),
    }
    record = json.dumps(timing)
    print("flink-peer-timing " + record, file=sys.stderr, flush=True)
    if args.timing:
        with open(args.timing, "w", encoding="utf-8") as fh:
            fh.write(record + "\n")
    summary = (f"flink peer: {nonblank} lines, "
               + (f"{valid} valid, {nonblank - valid} skipped, " if valid is not None else "")
               + f"{len(lines)} detections in {t_done - t_submit:.2f} s of job time "
               f"({t_end - T_PROCESS_START:.2f} s script)")
    print(summary, file=sys.stderr)


if __name__ == "__main__":
    main()
