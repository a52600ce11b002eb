#!/usr/bin/env bash
# swipeguard against Apache Flink, side by side (issue 7; figures in BENCHMARKS.md).
#
#   bash benches/peers/run.sh [RUNS]          # RUNS defaults to 5
#
# On one simulated JSONL file of about 1.04 M events (170 000 cards, 30 days, seed 1; made once
# and cached under target/bench-data/, the same file as scripts/bench-replay.sh), runs RUNS
# rounds; each round runs, in alternating order (odd rounds swipeguard first, even rounds Flink
# first):
#
#   swipeguard  `swipeguard replay FILE --detectors rapid_fire,failed_pin --out ... --no-progress`
#               and the same over a one-line file;
#   Flink       `rules.py` (benches/peers/flink, PyFlink 2.3.0, parallelism 1) over FILE and over
#               the same one-line file.
#
# Every run is a whole process, timed from spawn to exit (what a user waits for). Flink's
# steady state = median(whole) - median(one-line): the one-line run costs exactly its fixed
# start-up (Python, JVM gateway, planner, mini-cluster, deployment, teardown). swipeguard's
# one-line run is timed the same way, so its "steady" figure is defined identically.
#
# Then it cross-checks round 1's outputs with flink/crosscheck.py (Flink's per-swipe detections,
# swipeguard's 10-minute cool-down applied greedily, compared on (detector, card, ms); trigger-id
# differences only at same-millisecond ties) and checks that every swipeguard run wrote the same
# alerts. Prints a summary table and writes summary.json into the work directory.
#
# Environment:
#   SWIPEGUARD_BIN  swipeguard binary (default target/release/swipeguard, built with
#                   `cargo build --release` when it is missing)
#   DATA            input file (default target/bench-data/month-170k-cards.jsonl, made by
#                   `swipeguard simulate --cards 170000 --days 30 --seed 1` when missing)
#   FLINK_VENV      PyFlink venv (flink/install.sh is run first; a no-op when installed)
#   PARALLELISM     Flink parallelism (default 1; see flink/README.md)
#   WORK            output directory (default target/bench-data/flink-peer-<UTC time>)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
runs="${1:-5}"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [RUNS]" >&2; exit 2; }
parallelism="${PARALLELISM:-1}"
export FLINK_VENV="${FLINK_VENV:-$HOME/.cache/swipeguard/flink-venv}"
work="${WORK:-$repo/target/bench-data/flink-peer-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$work"

bin="${SWIPEGUARD_BIN:-$repo/target/release/swipeguard}"
if [[ ! -x "$bin" ]]; then
  echo "== building swipeguard (cargo build --release)"
  cargo build --release --quiet
fi
data="${DATA:-$repo/target/bench-data/month-170k-cards.jsonl}"
if [[ ! -s "$data" ]]; then
  echo "== simulating $data"
  mkdir -p "$(dirname "$data")"
  "$bin" simulate --cards 170000 --days 30 --seed 1 --out "$data"
fi

"$here/flink/install.sh"
py="$FLINK_VENV/bin/python"

lines=$(grep -c . "$data")
# The one-line input: the first line (simulate writes only valid events).
head -n 1 "$data" >"$work/one-line.jsonl"

# Runs a command as a whole process, its output to the named log; prints "WALL BUSY": seconds
# from spawn to exit, and the CPU seconds the whole machine was busy meanwhile (/proc/stat, all
# processes: Flink's JVM is not a waited-for child of its Python, so rusage misses it).
timed() {
  local log=$1
  shift
  python3 - "$log" "$@" <<'PY'
import os, subprocess, sys, time
def busy():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
log, cmd = sys.argv[1], sys.argv[2:]
with open(log, "w") as fh:
    b0, t0 = busy(), time.monotonic()
    rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode
    wall, cpu = time.monotonic() - t0, busy() - b0
if rc != 0:
    sys.stderr.write(f"run.sh: failed (exit {rc}): {' '.join(cmd)}\n")
    sys.stderr.writelines(open(log, errors="replace").readlines()[-30:])
    sys.exit(1)
print(f"{wall:.3f} {cpu:.2f}")
PY
}

sg() { # sg INPUT TAG
  timed "$work/sg-$2.log" "$bin" replay "$1" --detectors rapid_fire,failed_pin --no-progress \
    --out "$work/sg-$2.jsonl" --rejects "$work/sg-$2-rejects.jsonl"
}
flink() { # flink INPUT TAG LINES
  # A directory output (Flink's part files, no merge) and the known line count: nothing after
  # the job but reading the small detection and count files.
  rm -rf "$work/flink-$2"
  timed "$work/flink-$2.log" "$py" "$here/flink/rules.py" --input "$1" --output "$work/flink-$2" \
    --timing "$work/flink-$2.timing.json" --parallelism "$parallelism" --input-lines "$3"
}

echo "== machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)," \
  "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== input: $data ($lines lines); $runs rounds; work dir $work"
: >"$work/times.tsv"
for ((i = 1; i <= runs; i++)); do
  if ((i % 2 == 1)); then order="sg flink"; else order="flink sg"; fi
  for who in $order; do
    if [[ $who == sg ]]; then
      s_full=$(sg "$data" "$i")
      s_one=$(sg "$work/one-line.jsonl" "one-$i")
    else
      f_one=$(flink "$work/one-line.jsonl" "one-$i" 1)
      f_full=$(flink "$data" "$i" "$lines")
    fi
  done
  # Columns: round, then wall and CPU seconds of: swipeguard, its one-line run, Flink, its one-line run.
  printf '%s %s %s %s %s\n' "$i" "$s_full" "$s_one" "$f_full" "$f_one" | tr ' ' '\t' >>"$work/times.tsv"
  echo "round $i/$runs ($order): swipeguard ${s_full%% *} s (one line ${s_one%% *} s);" \
    "flink ${f_full%% *} s (one line ${f_one%% *} s)"
done

echo "== swipeguard runs write identical alerts"
for ((i = 2; i <= runs; i++)); do
  cmp -s "$work/sg-1.jsonl" "$work/sg-$i.jsonl" || {
    echo "run.sh: swipeguard run $i wrote different alerts from run 1" >&2
    exit 1
  }
done
echo "yes ($runs runs, $(wc -l <"$work/sg-1.jsonl") alerts each)"

echo "== crosscheck: flink round 1 vs swipeguard round 1"
crosscheck_rc=0
python3 "$here/flink/crosscheck.py" --flink "$work/flink-1" --swipeguard "$work/sg-1.jsonl" \
  --show 5 --json "$work/crosscheck.json" | tee "$work/crosscheck.txt" || crosscheck_rc=$?

python3 - "$work" "$runs" "$lines" "$parallelism" "$crosscheck_rc" <<'PY'
import json, os, re, statistics, sys
work, runs, lines, parallelism, cc_rc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
rows = [l.split("\t") for l in open(os.path.join(work, "times.tsv")) if l.strip()]
col = lambda k: [float(r[k]) for r in rows]
sg_full, sg_one, fl_full, fl_one = col(1), col(3), col(5), col(7)
sg_cpu, fl_cpu = col(2), col(6)
med = statistics.median

# Events: what swipeguard detected (its summary) and what Flink counted valid, round 1.
log = open(os.path.join(work, "sg-1.log")).read()
m = re.search(r"events detected ([\d,]+)\s+late ([\d,]+)\s+duplicate ([\d,]+)\s+invalid ([\d,]+)", log)
num = lambda s: int(s.replace(",", ""))
sg_events = num(m.group(1)) if m else None
sg_refused = sum(num(m.group(k)) for k in (2, 3, 4)) if m else None
t = json.load(open(os.path.join(work, "flink-1.timing.json")))
fl_events = t["valid_events"]
n = sg_events + sg_refused if m else lines        # rows read and judged, as both do
job = [json.load(open(os.path.join(work, f"flink-{i}.timing.json")))["job_s"] for i in range(1, runs + 1)]
job_one = [json.load(open(os.path.join(work, f"flink-one-{i}.timing.json")))["job_s"] for i in range(1, runs + 1)]
cc = json.load(open(os.path.join(work, "crosscheck.json")))

s_whole, s_one = med(sg_full), med(sg_one)
f_whole, f_one = med(fl_full), med(fl_one)
s_steady, f_steady = s_whole - s_one, f_whole - f_one
f_job_steady = med(job) - med(job_one)
eps = lambda secs: n / secs if secs > 0 else float("nan")
res = {
    "input_lines": lines, "events": n, "swipeguard_detected": sg_events,
    "flink_valid": fl_events, "rounds": runs, "flink_parallelism": int(parallelism),
    "wall_s": {"swipeguard": sg_full, "swipeguard_one_line": sg_one,
               "flink": fl_full, "flink_one_line": fl_one},
    "cpu_s": {"swipeguard": sg_cpu, "flink": fl_cpu},
    "median_s": {"swipeguard": s_whole, "swipeguard_one_line": s_one,
                 "flink": f_whole, "flink_one_line": f_one,
                 "swipeguard_steady": s_steady, "flink_steady": f_steady,
                 "flink_job_steady": f_job_steady},
    "events_per_s": {"swipeguard_whole": eps(s_whole), "swipeguard_steady": eps(s_steady),
                     "flink_whole": eps(f_whole), "flink_steady": eps(f_steady),
                     "flink_job_steady": eps(f_job_steady)},
    "crosscheck": {"ok": cc["ok"], **cc["total"]},
}
e = res["events_per_s"]
res["ratio"] = {
    "whole_process": e["swipeguard_whole"] / e["flink_whole"],
    "steady_state": e["swipeguard_whole"] / e["flink_steady"] if f_steady > 0 else None,
    "steady_vs_steady": e["swipeguard_steady"] / e["flink_steady"] if f_steady > 0 else None,
}
json.dump(res, open(os.path.join(work, "summary.json"), "w"), indent=2)

k = lambda x: "-" if x != x else f"{x / 1000:,.0f}K" if x >= 10_000 else f"{x:,.0f}"
print()
print(f"swipeguard vs Flink: rapid_fire + failed_pin, {n:,} events, {runs} rounds "
      f"(medians; Flink parallelism {parallelism})")
print(f"{'':<34}{'swipeguard':>14}{'Flink':>14}{'ratio':>9}")
print(f"{'whole process, s':<34}{s_whole:>14.2f}{f_whole:>14.2f}")
print(f"{'one-line input (start-up), s':<34}{s_one:>14.2f}{f_one:>14.2f}")
print(f"{'steady state (whole - one-line), s':<34}{s_steady:>14.2f}{f_steady:>14.2f}")
print(f"{'machine CPU busy during run, s':<34}{med(sg_cpu):>14.2f}{med(fl_cpu):>14.2f}")
print(f"{'events/s, whole process':<34}{k(e['swipeguard_whole']):>14}{k(e['flink_whole']):>14}"
      f"{res['ratio']['whole_process']:>8.1f}x")
print(f"{'events/s, Flink steady state':<34}{k(e['swipeguard_whole']):>14}{k(e['flink_steady']):>14}"
      + (f"{res['ratio']['steady_state']:>8.1f}x" if f_steady > 0 else ""))
print(f"{'  (Flink job time only, steady)':<34}{'':>14}{k(e['flink_job_steady']):>14}"
      + (f"{e['swipeguard_whole'] / e['flink_job_steady']:>8.1f}x" if f_job_steady > 0 else ""))
c = res["crosscheck"]
print(f"crosscheck: {'AGREE' if c['ok'] else 'DISAGREE'} - {c['matched']:,} alerts matched, "
      f"{c['missing']} missing, {c['extra']} extra, {c['trigger_tie_explained']} trigger ids differ "
      f"by tie order, {c['trigger_unexplained']} unexplained "
      f"(Flink detections {c['flink_detections']:,} -> {c['expected_after_cooldown']:,} after cool-down)")
if fl_events is not None and sg_events is not None and fl_events != n:
    print(f"note: Flink counted {fl_events:,} valid rows, swipeguard judged {n:,}")
for name, r in (("whole process", res["ratio"]["whole_process"]),
                ("against Flink's steady state", res["ratio"]["steady_state"])):
    if r is None:
        print(f"target >= 10x ({name}): no figure (Flink's steady state within start-up noise)")
    else:
        print(f"target >= 10x ({name}): {'MET' if r >= 10 else 'NOT MET'} ({r:.1f}x)")
print(f"details: {work}/summary.json")
PY
exit "$crosscheck_rc"
