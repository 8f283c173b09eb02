"""celery-load: the fn-noop work on Celery 5 + Redis, for bench/peers.py.

Run with Debian's /usr/bin/python3 (python3-celery, python3-redis).

  worker:  BENCH_REDIS_URL=redis://127.0.0.1:P/0 \
           python3 -m celery -A celery_load worker -P prefork --concurrency 2
  client:  BENCH_REDIS_URL=... python3 celery_load.py --n N [--timeout SEC]

The same work as bench/ceiling.c: N tiny JSON task objects (json.dumps),
each parsed by a worker that returns one small JSON result, which the
client parses. Redis is the broker and the result backend. The client
first runs one warm-up task (bounded), so the worker is up before the
clock starts; then it sends the N tasks as one group and waits for every
result. Prints one JSON line.
"""

import json
import os
import sys
import time

from celery import Celery, group

app = Celery("celery_load", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
             backend=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="noop")
def noop(task_text):
    task = json.loads(task_text)
    return json.dumps({"task": task["id"], "attempt": 1, "status": "done", "result": None})


def main():
    n, timeout = 2000, 120
    args = sys.argv[1:]
    while args:
        flag, value = args[0], args[1] if len(args) > 1 else None
        if flag == "--n" and value:
            n = int(value)
        elif flag == "--timeout" and value:
            timeout = int(value)
        else:
            print("usage: celery_load.py [--n N] [--timeout SEC]", file=sys.stderr)
            return 2
        args = args[2:]
    noop.delay(json.dumps({"id": 0})).get(timeout=min(60, timeout))
    tasks = [json.dumps({"id": i, "attempt": 1, "job": 1, "spec": {"fn": "noop"}})
             for i in range(1, n + 1)]
    t0 = time.monotonic()
    results = group(noop.s(t) for t in tasks).apply_async().get(timeout=timeout)
    got = sum(1 for r in results if "task" in json.loads(r))
    secs = time.monotonic() - t0
    if got != n:
        print(f"celery-load: {got} of {n} results", file=sys.stderr)
        return 1
    print(json.dumps({"n": n, "total_s": round(secs, 6), "tasks_per_s": round(n / secs, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
