#!/usr/bin/env python3
"""Checks the task records of one array job, as printed by
`ztask results JOB --json` or `ztask submit --wait --json` (one JSON object
per line; submit's first line {"job":..,"tasks":..} is skipped).

    check_results.py FILE JOB LO HI [--stdout-is-index] [--min-retried N]
                     [--unchanged EARLIER]
    check_results.py --self-test

Passes (exit 0, one summary line on stdout) when the file holds exactly one
record per index LO..HI of JOB, every one "done" with exit code 0 and, with
--stdout-is-index, stdout equal to "<index>\\n". Otherwise exit 1 and up to
ten lines saying what is wrong. Anything that is not a JSON object counts
as a defect: the CLI's --json output has nothing else on stdout.

--min-retried N: at least N tasks ran more than once (attempts > 1): a
worker killed with tasks in hand must have had them run again elsewhere.

--unchanged EARLIER: EARLIER holds records of the same job read before a
fault (a master restart); each one that had finished then must be in FILE
exactly as it was (same task, worker, attempts, times, output): a result
the master had recorded may not be lost, re-run or rewritten.

--self-test: feeds the checks records with every defect they look for and
exits 1 unless each one is caught (so the test cannot pass vacuously).
"""
import collections
import json
import os
import sys
import tempfile

# What identifies one recorded outcome of a task.
KEPT_FIELDS = ("task", "index", "status", "worker", "attempts", "exit_code",
               "signal", "stdout", "stderr", "started", "finished")
FINISHED = ("done", "failed", "cancelled")


def read_records(path, job, problems):
    """The job's task records in path (submit's first line skipped)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                problems.append(f"line {n}: not JSON: {line[:80]!r}")
                continue
            if not isinstance(rec, dict):
                problems.append(f"line {n}: not an object")
                continue
            if "tasks" in rec and "task" not in rec:
                continue  # submit's {"job":ID,"tasks":N}
            if rec.get("job") != job:
                problems.append(f"line {n}: job {rec.get('job')} != {job}")
                continue
            if not isinstance(rec.get("index"), int):
                problems.append(f"line {n}: index {rec.get('index')!r}")
                continue
            records.append(rec)
    return records


def check(path, job, lo, hi, stdout_is_index=False, min_retried=0, unchanged=None):
    """(ok, lines): lines is the summary, or up to ten problems."""
    problems = []
    records = read_records(path, job, problems)
    seen = collections.Counter()
    by_index = {}
    retried = 0
    workers = collections.Counter()
    for rec in records:
        idx = rec["index"]
        seen[idx] += 1
        by_index[idx] = rec
        if rec.get("status") != "done" or rec.get("exit_code") != 0:
            problems.append(f"index {idx}: status {rec.get('status')} exit {rec.get('exit_code')}"
                            f" error {rec.get('error')!r} stderr {str(rec.get('stderr'))[:80]!r}")
        if stdout_is_index and rec.get("stdout") != f"{idx}\n":
            problems.append(f"index {idx}: stdout {str(rec.get('stdout'))[:40]!r}")
        if isinstance(rec.get("attempts"), int) and rec["attempts"] > 1:
            retried += 1
        workers[rec.get("worker")] += 1

    want = set(range(lo, hi + 1))
    missing = sorted(want - set(seen))
    extra = sorted(set(seen) - want)
    dups = sorted(i for i, c in seen.items() if c > 1)
    if missing:
        problems.append(f"{len(missing)} indexes missing, e.g. {missing[:10]}")
    if extra:
        problems.append(f"{len(extra)} unexpected indexes, e.g. {extra[:10]}")
    if dups:
        problems.append(f"{len(dups)} indexes listed more than once, e.g. {dups[:10]}")
    if retried < min_retried:
        problems.append(f"{retried} tasks ran more than once, want at least {min_retried}")

    kept = 0
    if unchanged is not None:
        earlier = [r for r in read_records(unchanged, job, problems)
                   if r.get("status") in FINISHED]
        changed = []
        for old in earlier:
            new = by_index.get(old["index"])
            diff = [k for k in KEPT_FIELDS if new is None or new.get(k) != old.get(k)]
            if diff:
                changed.append(f"index {old['index']}: "
                               + ("gone" if new is None else "changed " + ",".join(diff)))
        if changed:
            problems.append(f"{len(changed)} of {len(earlier)} results recorded before the "
                            f"fault changed, e.g. {changed[:3]}")
        kept = len(earlier)
        if kept == 0:
            problems.append("no result was recorded before the fault: nothing to compare")

    if problems:
        lines = problems[:10]
        if len(problems) > 10:
            lines.append(f"... and {len(problems) - 10} more")
        return False, lines
    summary = (f"{sum(seen.values())} results, indexes {lo}..{hi} once each, all done; "
               f"{retried} retried; {len(workers)} workers ran them")
    if unchanged is not None:
        summary += f"; the {kept} recorded before the fault unchanged"
    return True, [summary]


def self_test():
    """Every defect the checks look for must be caught."""
    def rec(i, **kw):
        r = {"task": 100 + i, "job": 7, "index": i, "status": "done", "worker": "w1",
             "attempts": 1, "exit_code": 0, "signal": 0, "stdout": f"{i}\n", "stderr": "",
             "started": 1.0 + i, "finished": 2.0 + i}
        r.update(kw)
        return json.dumps(r)

    good = [rec(i) for i in (1, 2, 3)]
    cases = [
        ("all good", good, {}, True),
        ("an index missing", good[:2], {}, False),
        ("an index twice", good + [rec(3)], {}, False),
        ("an unexpected index", good + [rec(4)], {}, False),
        ("a failed task", good[:2] + [rec(3, status="failed", exit_code=1)], {}, False),
        ("wrong stdout", good[:2] + [rec(3, stdout="x\n")], {}, False),
        ("not JSON", good + ["oops"], {}, False),
        ("another job", good + [rec(3, job=8)], {}, False),
        ("too few retried", good, {"min_retried": 1}, False),
        ("retried enough", good[:2] + [rec(3, attempts=2)], {"min_retried": 1}, True),
        ("kept", good, {"unchanged": good[:2]}, True),
        ("re-run after the fault", good[:2] + [rec(3, attempts=2, finished=9.0)],
         {"unchanged": good}, False),
        ("nothing recorded before", good, {"unchanged": []}, False),
    ]
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, lines, opts, want in cases:
            path = os.path.join(tmp, "r.jsonl")
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
            if "unchanged" in opts:
                earlier = os.path.join(tmp, "e.jsonl")
                with open(earlier, "w", encoding="utf-8") as f:
                    f.write("\n".join(opts["unchanged"]) + "\n")
                opts = dict(opts, unchanged=earlier)
            ok, out = check(path, 7, 1, 3, stdout_is_index=True, **opts)
            if ok != want:
                bad += 1
                print(f"self-test '{name}': got {'pass' if ok else 'fail'}: {out[:2]}")
    if bad:
        return 1
    print(f"{len(cases)} cases, each defect caught")
    return 0


def main():
    argv = sys.argv[1:]
    if argv == ["--self-test"]:
        return self_test()
    opts = {"stdout_is_index": False, "min_retried": 0, "unchanged": None}
    args = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--stdout-is-index":
            opts["stdout_is_index"] = True
        elif a in ("--min-retried", "--unchanged") and i + 1 < len(argv):
            i += 1
            key = a[2:].replace("-", "_")
            opts[key] = int(argv[i]) if key == "min_retried" else argv[i]
        elif a.startswith("--"):
            print(f"unknown option {a}\n{__doc__}", file=sys.stderr)
            return 2
        else:
            args.append(a)
        i += 1
    if len(args) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    ok, lines = check(args[0], int(args[1]), int(args[2]), int(args[3]), **opts)
    for line in lines:
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
