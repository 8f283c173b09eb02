"""The records the master sends (docs/protocol.md section 6).

They are plain dicts, exactly the objects ``ztask results --json``,
``status --json``, ``workers --json`` and ``stats --json`` print, with
these TypedDicts as their type hints. Member names are a stable interface;
a newer master may add members, which show up in the dicts as they are.
"""

from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, TypedDict

#: Task states after which nothing changes.
FINAL_STATES = frozenset(("done", "failed", "cancelled", "dep_failed"))


class TaskRecord(TypedDict):
    """A task with its latest result flattened into it. ``status`` is
    queued, assigned, running, done, failed, cancelled or dep_failed (never
    run: a job it depends on did not succeed, ``error`` says which); the result members
    are None while the task has no result; ``result`` is what an fn
    returned, as JSON (not a string)."""

    task: int
    job: int
    index: Optional[int]
    name: Optional[str]
    status: str
    attempts: int
    worker: Optional[str]
    exit_code: Optional[int]
    signal: Optional[int]
    timed_out: Optional[bool]
    stdout: Optional[str]
    stderr: Optional[str]
    stdout_truncated: Optional[bool]
    stderr_truncated: Optional[bool]
    result: Any
    error: Optional[str]
    started: Optional[float]
    finished: Optional[float]


class JobRecord(TypedDict):
    """A job's counters. ``state``: open, waiting (for the jobs it depends
    on), queued, running, done, failed, dep_failed, cancelled.
    ``finished`` is None until the last task finished.
    ``owner``: the CURVE key that submitted it (None: nobody, a master
    without keys); ``owner_name``: the name the master lists it under."""

    job: int
    name: Optional[str]
    state: str
    closed: bool
    total: int
    queued: int
    running: int
    done: int
    failed: int
    cancelled: int
    dep_failed: int
    created: float
    finished: Optional[float]
    owner: Optional[str]
    owner_name: Optional[str]
    held: bool               # Job.hold: its queued tasks wait
    max_running: int         # 0 = no limit


class WorkerRecord(TypedDict):
    worker: str
    host: str
    pid: int
    threads: int
    labels: List[str]
    alive: bool
    draining: bool
    left: bool                        # not alive because it said bye (else dead)
    running: int
    done: int
    failed: int
    last_heartbeat: Optional[float]   # None until its first heartbeat
    gone: Optional[float]             # when it died or left; None while alive


class StatsRecord(TypedDict, total=False):
    jobs: int
    tasks_queued: int
    tasks_running: int
    tasks_done: int
    tasks_failed: int
    tasks_dep_failed: int
    workers_alive: int
    threads_total: int
    duplicates: int
    results_per_s_1m: float
    uptime: float
    db_path: Optional[str]
    unrunnable: List[str]


class LogChunk(NamedTuple):
    """New output of a task: ``stream`` is "stdout" or "stderr"."""

    stream: str
    data: str


def job_finished(job: JobRecord) -> bool:
    """True when every task of a closed job has finished."""
    if job.get("finished"):
        return True
    return (job["closed"] and job["queued"] == 0 and job["running"] == 0
            and finished_count(job) >= job["total"])


def finished_count(job: JobRecord) -> int:
    return job["done"] + job["failed"] + job["cancelled"] + job.get("dep_failed", 0)
