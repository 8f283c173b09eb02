#!/usr/bin/env python3
"""The notes' distributed process, on ztask.

The notes' version: a master process serves a task queue and a result
queue over the network with multiprocessing managers (BaseManager, an
authkey); worker processes on other machines connect, take numbers, put
n*n on the result queue; the master puts n for n in range(N) on the task
queue and reads the results back as they arrive.

Here the ztask master is the queue (durable, shared, with CURVE keys
instead of an authkey), ztask-worker processes are the workers, and this
script is the master's side: it submits n for n in range(N) to the
built-in `square` function and prints each result as it arrives; then the
same with a shell command per item, for work that is a program rather than
a function.

    ztask-master --db ./ztask.db &
    ztask-worker --threads 4 &           # as many, on as many hosts, as you like
    PYTHONPATH=clients/python python3 examples/python/distributed_square.py --n 10

The master's address and keys come from ZTASK_MASTER / ZTASK_CURVE_SECRET /
ZTASK_MASTER_KEY or ~/.config/ztask/config, as for the `ztask` command.
"""

import argparse
import sys

import ztask


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10, help="how many numbers (default 10)")
    ap.add_argument("--master", help="HOST:PORT (default: ZTASK_MASTER, config, 127.0.0.1:5555)")
    args = ap.parse_args()
    n = args.n
    with ztask.Client(args.master) as client:
        # The function: one task per number, args = the number.
        job = client.submit(fn="square", items=range(n), name="distributed square")
        for rec in job.as_completed():
            if rec["status"] != "done":
                print(f"task {rec['index']} {rec['status']}: {rec['error']}", file=sys.stderr)
                continue
            print(f"square {rec['index']} -> {rec['result']}", flush=True)

        # A shell command per item: {} becomes the number.
        job = client.submit("echo $(( {} * {} ))", shell=True, items=range(n),
                            name="distributed square (shell)")
        for rec in job.as_completed():
            if rec["status"] != "done":
                print(f"task {rec['index']} {rec['status']}: {rec['stderr'] or rec['error']}",
                      file=sys.stderr)
                continue
            print(f"shell {rec['index']} -> {rec['stdout'].strip()}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ztask.ZtaskError as e:
        print(f"distributed_square: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
