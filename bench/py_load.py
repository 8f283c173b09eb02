"""py-load: the Python client's submit + collect, for bench/run.py.

    /usr/bin/python3 bench/py_load.py --master HOST:PORT --n N

Submits one job of N fn noop tasks (``submit(fn="noop", array=...)``,
batches of 5,000 as the CLI sends them), then reads every task's record
back as it finishes (``Job.as_completed``). The clock runs from the first
submit to the last record. Prints one JSON line: tasks_per_s, submit_s,
records (how many came back, each once), rss_kb (the client's peak RSS).
Uses the package in clients/python of this checkout.
"""

import argparse
import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients",
                                "python"))

import ztask  # noqa: E402


def peak_rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--master", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    with ztask.Client(a.master, timeout=60) as c:
        c.stats()   # connected before the clock starts
        t0 = time.monotonic()
        job = c.submit(fn="noop", array=range(a.n))
        t1 = time.monotonic()
        seen = bytearray(a.n)
        for rec in job.as_completed(timeout=a.timeout):
            seen[rec["index"]] += 1
        t2 = time.monotonic()
    if seen.count(1) != a.n:
        sys.exit(f"py-load: {a.n - seen.count(1)} tasks missing or repeated")
    print(json.dumps({"tasks_per_s": a.n / (t2 - t0), "submit_s": t1 - t0, "records": a.n,
                      "rss_kb": peak_rss_kb()}))


if __name__ == "__main__":
    main()
