"""ztask: a Python client for the ztask master (pure Python, needs pyzmq).

    import ztask
    with ztask.Client("127.0.0.1:5555") as c:
        job = c.submit(fn="square", items=range(10))
        for rec in job.as_completed():
            print(rec["index"], rec["result"])
        print(list(c.map("square", range(5))))          # [0, 1, 4, 9, 16]
        print(c.submit_fn("square", 7).result())          # 49

Records (task, job, worker, stats) are plain dicts, the objects
``ztask ... --json`` prints (docs/protocol.md section 6), typed with the
TypedDicts in ztask.records. Errors are ztask.ZtaskError subclasses that
carry the CLI's exit code and the master's error code. docs/python.md is
the reference.
"""

from .client import Client, Job
from .errors import (AuthError, BusyError, RefusedError, TaskFailed, UnreachableError,
                     UsageError, WaitTimeout, ZtaskError)
from .futures import Executor
from .records import JobRecord, LogChunk, StatsRecord, TaskRecord, WorkerRecord

__version__ = "0.1.0"

__all__ = ["Client", "Job", "Executor", "ZtaskError", "UsageError", "UnreachableError",
           "RefusedError", "BusyError", "AuthError", "WaitTimeout", "TaskFailed", "TaskRecord", "JobRecord",
           "WorkerRecord", "StatsRecord", "LogChunk"]
