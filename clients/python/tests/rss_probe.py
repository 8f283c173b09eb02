"""Run by test_memory.py in a fresh interpreter, so its peak RSS is the
client's alone: submits N fn noop items, reads them all back with
as_completed, and prints one JSON line with the figures.

    python3 rss_probe.py HOST:PORT N
"""

import json
import os
import sys
import time

if os.environ.get("ZTASK_PY_INSTALLED") != "1":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.dont_write_bytecode = True

import ztask  # noqa: E402


def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main():
    master, n = sys.argv[1], int(sys.argv[2])
    seen = bytearray(n)            # 1 byte per task: the check's own cost, counted in base
    with ztask.Client(master, timeout=60) as c:
        c.stats()                  # connected, every module loaded
        base = status_kb("VmRSS")
        t0 = time.monotonic()
        job = c.submit(fn="noop", items=range(n))
        t1 = time.monotonic()
        submit_peak = status_kb("VmHWM")
        count = 0
        for rec in job.as_completed():
            seen[rec["index"]] += 1
            count += 1
        t2 = time.monotonic()
    print(json.dumps({"n": n, "count": count, "each_once": seen.count(1) == n,
                      "base_kb": base, "submit_peak_kb": submit_peak,
                      "peak_kb": status_kb("VmHWM"), "submit_s": t1 - t0,
                      "collect_s": t2 - t1}))


if __name__ == "__main__":
    main()
