"""mp-managers: the notes' distributed queue, for bench/run.py.

    python3 bench/mp_managers.py --n N [--workers 2]

The study notes' way, measured: a BaseManager serves a task queue and a
result queue on 127.0.0.1 (a free port) with a shared authkey; worker
processes connect to it, take numbers, put n*n; the master's side puts n
for n in range(N), then reads N results back. Every put and get is a round
trip to the manager process. Nothing is durable. The clock runs from the
first put to the last result. Prints one JSON line: tasks_per_s.
"""

import argparse
import json
import multiprocessing
import queue
import sys
import time
from multiprocessing.managers import BaseManager

AUTHKEY = b"bench-secret"
STOP = None


class QueueManager(BaseManager):
    pass


def serve(address, ready):
    tasks, results = queue.Queue(), queue.Queue()
    QueueManager.register("get_task_queue", callable=lambda: tasks)
    QueueManager.register("get_result_queue", callable=lambda: results)
    m = QueueManager(address=address, authkey=AUTHKEY)
    server = m.get_server()
    ready.put(server.address)
    server.serve_forever()


def connect(address):
    QueueManager.register("get_task_queue")
    QueueManager.register("get_result_queue")
    m = QueueManager(address=address, authkey=AUTHKEY)
    m.connect()
    return m.get_task_queue(), m.get_result_queue()


def worker(address):
    tasks, results = connect(address)
    while True:
        n = tasks.get()
        if n is STOP:
            return
        results.put((n, n * n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Queue()
    server = ctx.Process(target=serve, args=(("127.0.0.1", 0), ready), daemon=True)
    server.start()
    address = ready.get(timeout=30)
    workers = [ctx.Process(target=worker, args=(address,), daemon=True)
               for _ in range(a.workers)]
    for w in workers:
        w.start()
    tasks, results = connect(address)
    t0 = time.monotonic()
    for n in range(a.n):
        tasks.put(n)
    got = 0
    for _ in range(a.n):
        n, sq = results.get(timeout=60)
        got += sq == n * n
    wall = time.monotonic() - t0
    for _ in workers:
        tasks.put(STOP)
    for w in workers:
        w.join(30)
    server.terminate()
    if got != a.n:
        sys.exit(f"mp-managers: {a.n - got} wrong results")
    print(json.dumps({"tasks_per_s": a.n / wall, "wall_s": wall}))


if __name__ == "__main__":
    main()
