#!/usr/bin/env python3
"""Checks the task records of one array job, as printed by
`ztask results JOB --json` or `ztask submit --wait --json` (one JSON object
per line; submit's first line {"job":..,"tasks":..} is skipped).

    check_results.py FILE JOB LO HI [--stdout-is-index]

Passes (exit 0, one summary line on stdout) when the file holds exactly one
record per index LO..HI of JOB, every one "done" with exit code 0 and, with
--stdout-is-index, stdout equal to "<index>\\n". Otherwise exit 1 and up to
ten lines saying what is wrong. Anything that is not a JSON object counts
as a defect: the CLI's --json output has nothing else on stdout.
"""
import collections
import json
import sys


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    stdout_is_index = "--stdout-is-index" in sys.argv
    if len(args) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    path, job, lo, hi = args[0], int(args[1]), int(args[2]), int(args[3])

    problems = []
    seen = collections.Counter()
    retried = 0
    workers = collections.Counter()
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
            idx = rec.get("index")
            if not isinstance(idx, int):
                problems.append(f"line {n}: index {idx!r}")
                continue
            seen[idx] += 1
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

    total = sum(seen.values())
    if problems:
        for p in problems[:10]:
            print(p)
        if len(problems) > 10:
            print(f"... and {len(problems) - 10} more")
        return 1
    print(f"{total} results, indexes {lo}..{hi} once each, all done; "
          f"{retried} retried; {len(workers)} workers ran them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
