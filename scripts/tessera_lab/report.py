"""report — the assertions of a chaos run (finished unattended, no wait past deadline + grace,
every planned sequence once along the committed lineage, at most one checkpoint interval redone
per restart, final validation loss near the fault-free run's) and its per-fault recovery times.
The parsing and pairing are pure functions of the run's records."""

import json
import os
import re
import statistics
import subprocess
import tomllib

from .common import ROOT
from .svg import draw_recovery

LOST = ("kill", "partition", "pause", "ckpt-kill")  # faults the launcher must detect
BACK = ("revive", "heal", "add")  # faults that let a host join


def events_of(run_dir):
    with open(os.path.join(run_dir, "launch", "events.jsonl")) as f:
        return [json.loads(line) for line in f]


def last_val_loss(lines):
    val = None
    for line in lines:
        m = re.search(r'"val_loss": ([0-9.eE+-]+)', line)
        if m:
            val = float(m.group(1))
    return val


def final_val(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return last_val_loss(f)


def redone(lines):
    """per restart (a new attempt: the elapsed time starts again): the steps trained again"""
    out, prev, prev_t = [], 0, -1.0
    for line in lines:
        m = re.search(r'"step": (\d+),', line)
        t = re.search(r'"elapsed_s": ([0-9.]+)', line)
        if not m or not t:
            continue
        step, el = int(m.group(1)), float(t.group(1))
        if el < prev_t:
            out.append(max(0, prev - step + 1))
        prev, prev_t = step, el
    return out


def redone_steps(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return redone(f)


def attribute(faults, ev):
    """pair each failure the launcher saw with the fault that caused it (the latest one before
    it), and each join with the latest revive, heal or add; faults left unpaired caused nothing
    the launcher had to act on by itself (e.g. a partition healed during start-up). One row per
    fault: action, host, then seconds fault -> detected, -> restart, -> first step, and fault
    -> first new step ("-" where there is none)"""
    pairs = {}
    for e in ev:
        kinds = LOST if e["event"] == "detected" else BACK if (
            e["event"] == "stop_requested" and e.get("kind") == "join") else None
        if not kinds:
            continue
        cands = [i for i, x in enumerate(faults) if x["action"] in kinds and x["t"] <= e["t"]
                 and i not in pairs]
        if cands:
            pairs[cands[-1]] = e

    def span(t0, e):
        return f"{e['t'] - t0:.2f}" if e else "-"
    rows = []
    for i, x in enumerate(faults):
        d = pairs.get(i)
        st = next((e for e in ev if e["event"] == "start" and d and e["t"] >= d["t"]), None)
        fs = next((e for e in ev if e["event"] == "first_step" and st
                   and e.get("attempt") == st["attempt"]), None)
        rows.append((x["action"], x.get("host") or "", span(x["t"], d),
                     span(d["t"], st) if d else "-", span(st["t"], fs) if st else "-",
                     span(x["t"], fs) if d else "-"))
    return rows


def longest_wait(ev):
    """{attempt: seconds from the first sign of its failure to its job's end}"""
    det, waits = {}, {}
    for e in ev:
        if e["event"] == "detected":
            det[e["attempt"]] = e["t"]
        if e["event"] == "end" and e["attempt"] in det:
            waits[e["attempt"]] = e.get("job_ended", e["t"]) - det[e["attempt"]]
    return waits


def per_kind(rows):
    """[(kind, faults, acted on, [median (min-max) text per time column], medians of the first
    three columns)] over the faults the launcher acted on"""
    out = []
    for kind in dict.fromkeys(r[0] for r in rows):
        rs = [r for r in rows if r[0] == kind]
        acted = [r for r in rs if r[5] != "-"]
        cols = []
        for i in (2, 3, 4, 5):
            xs = [float(r[i]) for r in acted if r[i] != "-"]
            cols.append(f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"
                        if xs else "-")
        med = [statistics.median([float(r[i]) for r in acted if r[i] != "-"] or [0])
               for i in (2, 3, 4)]
        out.append((kind, len(rs), len(acted), cols, med))
    return out


def cmd_report(a):
    """the assertions of a chaos run and its per-fault times; exit 1 when one fails"""
    rd = a.run_dir
    with open(os.path.join(rd, "config.toml"), "rb") as f:
        cfg = tomllib.load(f)
    timeout, every = float(cfg["comm"]["timeout_s"]), int(cfg["ckpt"]["every"])
    steps, gb = int(cfg["train"]["steps"]), int(cfg["train"]["global_batch"])
    ev = events_of(rd)
    bad = []
    if not any(e["event"] == "exit" and e.get("code") == 0 for e in ev):
        bad.append("the launcher did not finish the run")
    # no wait past the deadline + grace: from the first sign of a failure to the job's end
    worst = 0.0
    for attempt, waited in longest_wait(ev).items():
        worst = max(worst, waited)
        if waited > timeout + a.grace + 2:
            bad.append(f"attempt {attempt}: the job ended {waited:.1f} s after the "
                       f"failure (deadline {timeout:g} + grace {a.grace:g} s)")
    print(f"longest time from a failure's detection to the end of its job: {worst:.1f} s "
          f"(limit: deadline {timeout:g} + grace {a.grace:g} + 2 s)")
    # every planned sequence exactly once along the committed lineage
    lin = subprocess.run(["sh", os.path.join(ROOT, "tests", "ckpt", "check_lineage.sh"), rd,
                          str(steps), str(gb)], capture_output=True, text=True)
    print(lin.stdout.strip().splitlines()[-1] if lin.stdout.strip() else lin.stderr.strip())
    if lin.returncode != 0:
        bad.append("the committed lineage does not use every sequence exactly once")
    redo = redone_steps(rd)
    print(f"attempts: {1 + len(redo)}; steps redone at each restart: {redo or 'none'} "
          f"(checkpoint interval {every})")
    if any(r > every for r in redo):
        bad.append(f"a restart redid more than one checkpoint interval ({max(redo)} > {every})")
    val = final_val(rd)
    if a.reference:
        ref = final_val(a.reference)
        rel = abs(val - ref) / ref
        print(f"final validation loss {val:.4f}, fault-free {ref:.4f}: {100 * rel:.2f}% apart")
        if rel > 0.01:
            bad.append(f"final validation loss {val:.4f} is {100 * rel:.2f}% from the "
                       f"fault-free run's {ref:.4f} (limit 1%)")
    # per fault: fault -> detected (or join asked) -> restart -> first new step
    try:
        with open(os.path.join(rd, "launch", "faults.jsonl")) as f:
            faults = [json.loads(line) for line in f]
    except OSError:
        faults = []
    rows = attribute(faults, ev)
    if rows:
        print("| fault | host | -> detected (join: asked) s | -> restart s | -> first step s "
              "| fault -> first new step s |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    if len(rows) > 8:  # per kind: medians (min-max) over the faults the launcher acted on
        print("\n| fault kind | faults (acted on) | -> detected (join: asked) s | -> restart s "
              "| -> first step s | fault -> first new step s |")
        print("| --- | --- | --- | --- | --- | --- |")
        kinds = per_kind(rows)
        for kind, n, acted, cols, _ in kinds:
            print(f"| {kind} | {n} ({acted}) | " + " | ".join(cols) + " |")
        if a.svg:
            draw_recovery([(k[0], k[4]) for k in kinds], a.svg)
    for b in bad:
        print(f"report: FAIL: {b}")
    if not bad:
        print("report: the run completed unattended; every assertion holds")
    return 1 if bad else 0
