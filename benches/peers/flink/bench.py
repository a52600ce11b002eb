#!/usr/bin/env python3
"""Benchmark driver for the Flink peer: start-up, total and steady-state time (stdlib only).

    python3 bench.py --input swipes.jsonl [--parallelism 1] [--runs 1] [--out-dir DIR] \
        [--json result.json] [--no-count]

For each run it times two identical rules.py processes, as whole processes (wall clock from
spawn to exit): one over a ONE-LINE input (the first valid line of --input), one over --input.
Flink's fixed cost - Python, the JVM gateway, the planner, the local mini-cluster, job
deployment and teardown - is 8-9 s here on a quiet machine (12-15 s while a build competes
for the 2 cores) and does not depend on the input; the one-line run
measures exactly that. So:

    startup_s       = wall time of the one-line run
    total_s         = wall time of the real run
    steady_s        = total_s - startup_s          (the time the input itself cost)
    events_per_s    = valid events / steady_s      (and / total_s, for the whole-process view)

The time to the first processed record is not observable without instrumenting Flink, which
is why the one-line baseline is used instead. Also reported, from rules.py's own timestamps:
job_s (job submitted -> finished, inside the script) and its difference to the baseline's,
which leaves out Python and JVM start-up noise. With --runs N the medians are reported.

Runs rules.py with $FLINK_VENV/bin/python (default ~/.cache/swipeguard/flink-venv).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIRED = ("event_id", "ts", "card_id", "amount_minor", "merchant_id", "outcome")


def first_valid_line(path):
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and all(obj.get(f) not in (None, "") for f in REQUIRED):
                return line if line.endswith("\n") else line + "\n"
    raise SystemExit(f"bench: no valid event in {path}")


def run_once(python, inp, out, timing, parallelism, no_count, log):
    cmd = [python, os.path.join(HERE, "rules.py"), "--input", inp, "--output", out,
           "--timing", timing, "--parallelism", str(parallelism)]
    if no_count:
        cmd.append("--no-count")
    t0 = time.monotonic()
    with open(log, "w") as lf:
        rc = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT).returncode
    wall = time.monotonic() - t0
    if rc != 0:
        raise SystemExit(f"bench: rules.py failed (exit {rc}); see {log}")
    with open(timing) as fh:
        t = json.load(fh)
    t["wall_s"] = wall
    return t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--parallelism", type=int, default=1)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--out-dir", help="keep detections, timings and logs here (default: temp)")
    ap.add_argument("--json", help="write the result as JSON to this file")
    ap.add_argument("--no-count", action="store_true", help="pass --no-count to rules.py")
    ap.add_argument("--venv", default=os.environ.get(
        "FLINK_VENV", os.path.expanduser("~/.cache/swipeguard/flink-venv")))
    args = ap.parse_args(argv)

    python = os.path.join(args.venv, "bin", "python")
    if not os.path.exists(python):
        raise SystemExit(f"bench: no venv at {args.venv}; run install.sh first")
    work = args.out_dir or tempfile.mkdtemp(prefix="flink-peer-bench-")
    os.makedirs(work, exist_ok=True)
    one = os.path.join(work, "one-line.jsonl")
    with open(one, "w", encoding="utf-8") as fh:
        fh.write(first_valid_line(args.input))

    base, real = [], []
    for i in range(args.runs):
        base.append(run_once(python, one, os.path.join(work, f"baseline-{i}.jsonl"),
                             os.path.join(work, f"baseline-{i}.timing.json"),
                             args.parallelism, args.no_count,
                             os.path.join(work, f"baseline-{i}.log")))
        real.append(run_once(python, os.path.abspath(args.input),
                             os.path.join(work, f"detections-{i}.jsonl"),
                             os.path.join(work, f"run-{i}.timing.json"),
                             args.parallelism, args.no_count,
                             os.path.join(work, f"run-{i}.log")))
        print(f"bench: run {i + 1}/{args.runs}: one-line {base[-1]['wall_s']:.2f} s, "
              f"input {real[-1]['wall_s']:.2f} s", file=sys.stderr)

    med = statistics.median
    startup = med(t["wall_s"] for t in base)
    total = med(t["wall_s"] for t in real)
    steady = total - startup
    job_base = med(t["job_s"] for t in base)
    job = med(t["job_s"] for t in real)
    events = real[0]["valid_events"]
    lines = real[0]["input_lines"]
    n = events if events is not None else lines
    res = {
        "input": os.path.abspath(args.input),
        "parallelism": args.parallelism,
        "runs": args.runs,
        "input_lines": lines,
        "valid_events": events,
        "detections": real[0]["detections"],
        "startup_s": round(startup, 3),
        "total_s": round(total, 3),
        "steady_s": round(steady, 3),
        "events_per_s_steady": round(n / steady) if steady > 0 else None,
        "events_per_s_total": round(n / total),
        "job_s": round(job, 3),
        "job_s_one_line": round(job_base, 3),
        "job_steady_s": round(job - job_base, 3),
        "all_wall_s": {"one_line": [round(t["wall_s"], 3) for t in base],
                       "input": [round(t["wall_s"], 3) for t in real]},
        "work_dir": work,
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=2)
            fh.write("\n")
    print(json.dumps(res, indent=2))
    if steady <= 0.5:
        print("bench: steady-state time is within start-up noise; use a larger input",
              file=sys.stderr)


if __name__ == "__main__":
    main()
