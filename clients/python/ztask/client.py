"""Client and Job: the ``ztask`` CLI's requests as Python methods.

Every method is one or a few request/reply exchanges with the master's API
socket (docs/protocol.md section 7); the client keeps no state of its own
beyond the connection. Records are dicts (see records.py).

Waiting never spins: ``Job.wait`` asks for the job's status with
``wait_ms``, which the master holds until the job finishes (or the wait
passes), so the end is seen the moment it is committed. ``as_completed``
and ``map`` combine those held status requests (the job's counters say
how many tasks have finished) with ``results`` pages read from a task-id
cursor, reading only as far as the newly finished tasks go; see
``Job.as_completed`` and docs/python.md for what this costs and the
protocol addition that would make it cheaper.

Threads: a Client may be shared between threads; its requests go one at a
time over one socket. Generators (``as_completed``, ``results``, ``logs``,
``map``) send requests when they are advanced, from the advancing thread.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import sys
import time
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Mapping,
                    Optional, Sequence, Tuple, Union)

from . import config
from . import specs as _specs
from .errors import RefusedError, TaskFailed, UsageError, WaitTimeout, ZtaskError
from .records import (FINAL_STATES, JobRecord, LogChunk, StatsRecord, TaskRecord, WorkerRecord,
                      finished_count, job_finished)
from .transport import Connection, DeadlineReached, encode, new_submit_key

if TYPE_CHECKING:
    from concurrent.futures import Future

    from .futures import Executor

#: How long the master holds each status request of Job.wait: how often
#: the progress callback runs (the end itself is seen at once).
WAIT_POLL = 0.2
#: A wait's last status request is held by the master until its timeout;
#: its answer (the counts at the timeout, or the end that came just then)
#: is waited for this much longer, and no more, whatever the client's
#: timeout= (cli/cmd_wait.c's WAIT_GRACE_MS).
WAIT_GRACE = 0.5
#: How often as_completed / map look for newly finished tasks, at most.
STREAM_POLL = 0.1
#: How often logs(follow=True) asks for new output (as `ztask logs -f`).
LOGS_POLL = 0.2
#: Task records per results request: the protocol allows 10,000; half keeps
#: the client's peak low (a page of fn records is ~10 MiB as dicts).
PAGE = 5000

TaskRef = Union[int, str, Tuple[int, int]]
#: Jobs a submit depends on: a Job, a job id, or an iterable of them.
JobRefs = Union["Job", int, Iterable[Union["Job", int]], None]
_NOTHING = object()


class Client:
    """A connection to a ztask master.

    ``master`` is "HOST[:PORT]"; ``curve_secret`` is this client's key file
    (from ``ztask keygen``) and ``master_key`` the master's public key (its
    .pub file or 40 Z85 characters); ``timeout`` is how long to wait for
    each reply, in seconds. Each defaults as the CLI's does: the environment
    (ZTASK_MASTER, ZTASK_CURVE_SECRET, ZTASK_MASTER_KEY,
    ZTASK_REQUEST_TIMEOUT), then the config file (ZTASK_CONFIG,
    ~/.config/ztask/config, /etc/ztask/config), then 127.0.0.1:5555, no
    CURVE, 10 s. Raises UsageError for bad settings. Nothing is sent until
    the first request. Use as a context manager, or call close().
    """

    def __init__(self, master: Optional[str] = None, curve_secret: Optional[str] = None,
                 master_key: Optional[str] = None, timeout: Optional[float] = None) -> None:
        self.settings = config.resolve(master, curve_secret, master_key, timeout)
        self._conn = Connection(self.settings)
        self._executor: Optional["Executor"] = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ztask.Client master={self.settings.address}>"

    def close(self) -> None:
        """Closes the job of submit_fn's futures (their tasks still run) and
        the socket."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._conn.close()

    def _twin(self) -> "Client":
        """A Client with the same settings and a socket of its own, for a
        thread whose held requests must not make this one's wait."""
        twin = Client.__new__(Client)
        twin.settings, twin._conn, twin._executor = self.settings, Connection(self.settings), None
        return twin

    def call(self, type_: str, retry_safe: bool = False, hold: float = 0.0,
             **members: Any) -> Dict[str, Any]:
        """Sends one raw request (docs/protocol.md section 7) and returns the
        reply's members. For requests this class has no method for."""
        return self._conn.call(type_, members, retry_safe=retry_safe, hold=hold)

    # ---- submitting ----

    def submit(self, command: Union[str, Sequence[str], None] = None, *, shell: bool = False,
               fn: Optional[str] = None, args: Any = _specs._NO_ARGS,
               array: Union[str, Iterable[int], None] = None,
               items: Optional[Iterable[Any]] = None,
               specs: Optional[Iterable[Mapping[str, Any]]] = None,
               name: Optional[str] = None, timeout: Optional[float] = None,
               retries: Optional[int] = None, priority: Optional[int] = None,
               env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
               stdin: Optional[str] = None, output_cap: Optional[int] = None,
               require: Union[str, Sequence[str], None] = None,
               task_name: Optional[str] = None,
               max_running: Optional[int] = None, stdout_file: Optional[str] = None,
               stderr_file: Optional[str] = None, capture: bool = True,
               cpus: Optional[int] = None, mem: Optional[int] = None,
               gpus: Optional[float] = None, resources: Optional[Mapping[str, int]] = None,
               after: JobRefs = None, after_any: JobRefs = None,
               after_each: JobRefs = None) -> "Job":
        """Submits one job and returns it (its tasks start at once).

        What to run (one of): ``command``, a list of strings run directly
        (a plain string is a program without arguments, as in subprocess),
        or with ``shell=True`` a string for /bin/sh -c; ``fn``, a function
        the workers provide (built-ins: noop, echo, sleep, square, fail),
        with ``args`` (any JSON value); ``specs``, an iterable of task
        specs (dicts, docs/protocol.md section 5; the options below
        override their members), like ``ztask submit --file``.

        How many tasks: one, or one per index of ``array`` ("1-50",
        "0-999:5", "1,5,9", or an iterable of ints: ``range(50)``), or one per
        element of ``items`` (index 0, 1, ...). ``{}`` in the command or in
        fn args becomes the index or the item; see specs.py for the rules.
        Iterables are read lazily and sent in batches, so a million items
        never sit in memory.

        Options: ``name`` (the job's), ``timeout`` (seconds per attempt),
        ``retries``, ``priority``, ``env``, ``cwd``, ``stdin`` (text),
        ``output_cap`` (bytes kept per stream), ``require`` (worker labels),
        ``task_name`` (each task's name), ``stdout_file`` and
        ``stderr_file`` (commands: the worker writes the whole stream to
        that path, relative to cwd, with %{job}, %{index}, %{task} and
        %{attempt} filled in), ``capture=False`` (the master keeps none
        of the output: only the files). Of the job: ``max_running``, at
        most that many of its tasks run at once (``Job.set_max_running``
        changes it).

        Resources (a task runs only on a worker where all it asks is free;
        default one CPU): ``cpus``, ``mem`` (bytes), ``gpus`` (whole GPUs,
        or a share of one below 1: 0.5), ``resources`` (others the workers
        declare: ``{"licence": 1}``). The task learns what it got from
        ZTASK_CPUS, ZTASK_GPUS and CUDA_VISIBLE_DEVICES.

        Dependencies (a Job, a job id, or an iterable of them, like
        ``ztask submit --after``): ``after``, the tasks run once every one
        of those jobs has finished with all its tasks done; ``after_any``,
        once each has finished however it ended; ``after_each``, task i
        runs once task i of that job is done. A task whose dependency can
        never be met ends with status ``dep_failed`` (counted in the job
        record's ``dep_failed``). A job that does not exist is refused
        (RefusedError, code not_found; nothing is submitted).

        Raises UsageError (nothing sent), or the request's error. When a
        later batch fails, the error's ``job`` and ``submitted`` say which
        job was left incomplete (cancel it with ``client.job(e.job).cancel()``).
        """
        asked = dict(resources or {})
        for key, value in (("cpus", cpus), ("mem", mem), ("gpus", gpus)):
            if value is not None:
                asked[key] = value
        options = _specs.task_options(timeout, retries, priority, env, cwd, stdin, output_cap,
                                      require, task_name, stdout_file, stderr_file, capture,
                                      asked)
        deps = {key: ids for key, ids in (("after", _job_ids("after", after)),
                                          ("after_any", _job_ids("after_any", after_any)),
                                          ("after_each", _job_ids("after_each", after_each)))
                if ids}
        gen = _specs.job_specs(command, shell, fn, args, array, items, specs, options)
        return self._submit_specs(gen, name, max_running, deps)

    def _submit_specs(self, gen: Iterable[Dict[str, Any]], name: Optional[str],
                      max_running: Optional[int] = None,
                      deps: Optional[Dict[str, List[int]]] = None) -> "Job":
        """Sends the job in batches, one request at a time. While a batch
        travels and commits (sent from a helper thread), the next one is
        encoded here: on the caller's thread, since the items may be bound
        to it (a database cursor)."""
        if name is not None and not (isinstance(name, str)
                                     and 0 < len(name.encode("utf-8", "surrogatepass")) <= 256):
            raise UsageError("name= wants a non-empty string of at most 256 bytes")
        if max_running is not None and not (isinstance(max_running, int)
                                            and 1 <= max_running <= 1_000_000):
            raise UsageError("max_running= wants a number of tasks in 1..1000000")
        job_id = submitted = 0
        key, nbatch = new_submit_key(), 0   # each batch its own key: safe to resend
        sender: Optional[concurrent.futures.ThreadPoolExecutor] = None
        in_flight: Optional[Tuple["Future[Dict[str, Any]]", int]] = None

        def settle() -> None:   # waits for the batch in flight and counts it
            nonlocal job_id, submitted, in_flight
            if in_flight is not None:
                future, n = in_flight
                in_flight = None
                rep = future.result()
                job_id = job_id or rep["job"]
                submitted += n

        try:
            for batch, more in _specs.batches(gen):
                settle()
                head = {"v": 1, "type": "submit", "job": job_id, "more": more,
                        "key": f"{key}.{nbatch}"}
                nbatch += 1
                if job_id == 0 and name is not None:
                    head["name"] = name
                if job_id == 0:
                    head["definition"] = _definition()
                    if max_running is not None:
                        head["max_running"] = max_running
                if job_id == 0 and deps:
                    head.update(deps)
                body = encode(head)[:-1] + b',"tasks":[' + b",".join(batch) + b"]}"
                if not more:   # nothing left to encode: no helper needed
                    rep = self._conn.call("submit", body=body, retry_safe=True)
                    job_id = job_id or rep["job"]
                    submitted += len(batch)
                    break
                if sender is None:
                    sender = concurrent.futures.ThreadPoolExecutor(1, "ztask-submit")
                in_flight = (sender.submit(self._conn.call, "submit", body=body, retry_safe=True),
                             len(batch))
        except ZtaskError as e:
            if in_flight is not None and in_flight[0].exception() is None:
                settle()   # refused here (the next batch), after that one was taken
            if job_id:
                e.job, e.submitted = job_id, submitted
                e.message = (f"{e.message}; job {job_id} is incomplete: {submitted} tasks were "
                             f"submitted; cancel it with client.job({job_id}).cancel()")
                e.args = (e.message,)
            raise
        finally:
            if sender is not None:
                sender.shutdown(wait=True)
        return Job(self, job_id, name=name, total=submitted)

    def map(self, fn: str, iterable: Iterable[Any], *, timeout: Optional[float] = None,
            poll: float = STREAM_POLL, **options: Any) -> Iterator[Any]:
        """Runs ``fn`` once per item (its args) as one job and returns an
        iterator of the results in the order of the items, like
        ``multiprocessing.Pool.imap`` (``list(...)`` for ``Pool.map``).

        The job is submitted before this returns; results stream as the
        tasks finish, in order. A task that failed raises TaskFailed when
        its turn comes (its record in ``e.record``); ``timeout`` (seconds,
        from this call) raises WaitTimeout. ``options`` are submit()'s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        items = iter(iterable)
        first = next(items, _NOTHING)
        if first is _NOTHING:
            return iter(())   # as Pool.map([]): a job cannot be empty
        job = self.submit(fn=fn, items=itertools.chain((first,), items), **options)
        return (rec["result"] if rec["status"] == "done" else _raise(TaskFailed(rec))
                for rec in job._in_order(deadline, poll))

    def executor(self, **options: Any) -> "Executor":
        """A concurrent.futures.Executor whose futures are tasks of one job
        (see ztask.futures.Executor); ``options`` are submit()'s."""
        from .futures import Executor
        return Executor(self, **options)

    def submit_fn(self, fn: str, *args: Any, **kwargs: Any) -> "Future[Any]":
        """Runs ``fn`` as one task and returns a concurrent.futures.Future
        of its result: ``submit_fn("square", 7).result() == 49``. One
        positional argument is the task's args; several are a list; keyword
        arguments are an object. A failed task sets TaskFailed on the future.
        The tasks of a Client's submit_fn calls share one job, closed by
        close(); for options, use ``client.executor(**options)``."""
        if self._executor is None:
            self._executor = self.executor()
        return self._executor.submit(fn, *args, **kwargs)

    # ---- reading ----

    def job(self, job_id: int) -> "Job":
        """A handle on an existing job (no request is sent)."""
        return Job(self, job_id)

    def jobs(self, all: bool = False) -> List[JobRecord]:
        """This client's jobs (with CURVE: those its key submitted); with
        ``all``, every client's (an admin key only: AuthError otherwise;
        a master without keys shows everyone every job)."""
        return self._conn.call("jobs", {"all": True} if all else None,
                               retry_safe=True)["jobs"]

    def workers(self) -> List[WorkerRecord]:
        """Every worker the master knows, alive or not."""
        return self._conn.call("workers", retry_safe=True)["workers"]

    def stats(self) -> StatsRecord:
        """The master's totals."""
        return self._conn.call("stats", retry_safe=True)["stats"]

    def drain(self, worker: str) -> None:
        """Lets a worker finish its tasks, take no new ones, and leave."""
        self._conn.call("drain", {"worker": worker})

    def logs(self, task: TaskRef, follow: bool = False,
             poll: float = LOGS_POLL) -> Iterator[LogChunk]:
        """A task's output as LogChunk(stream, data) pieces, in order per
        stream. ``task`` is a global task id, (job, index), or "JOB.INDEX"
        as in ``ztask logs``. Without ``follow``, ends when nothing new
        comes; with it, when the task has finished and nothing new comes,
        asking every ``poll`` seconds meanwhile."""
        ref = _task_ref(task)
        out_off = err_off = 0
        while True:
            rep = self._conn.call("logs", {**ref, "out_offset": out_off, "err_offset": err_off},
                                  retry_safe=True)
            if rep.get("stdout"):
                yield LogChunk("stdout", rep["stdout"])
            if rep.get("stderr"):
                yield LogChunk("stderr", rep["stderr"])
            progressed = rep["out_offset"] > out_off or rep["err_offset"] > err_off
            out_off = max(out_off, rep["out_offset"])
            err_off = max(err_off, rep["err_offset"])
            if not progressed and (not follow or rep["state"] in FINAL_STATES):
                return
            if not progressed:
                time.sleep(poll)   # live output reaches the master in chunks anyway

    def _status(self, job_id: int, hold: float = 0.0,
                deadline: Optional[float] = None) -> JobRecord:
        """One job's record; with ``hold``, answered when the job finishes
        or after ``hold`` seconds. With a wait's ``deadline``
        (time.monotonic()), the request ends by it plus WAIT_GRACE at the
        latest: DeadlineReached then."""
        members: Dict[str, Any] = {"job": job_id}
        if hold > 0:
            members["wait_ms"] = min(60000, int(hold * 1000))
        until = None if deadline is None else deadline + WAIT_GRACE
        rep = self._conn.call("status", members, retry_safe=True, hold=hold, until=until)
        for rec in rep["jobs"]:
            if rec["job"] == job_id:
                return rec
        raise RefusedError(f"job {job_id} not found (the master's status reply did not list "
                           "it)", "not_found")

    def _results(self, job_id: int, after: int, limit: int,
                 failed_only: bool = False) -> Dict[str, Any]:
        members: Dict[str, Any] = {"job": job_id, "after": after, "limit": limit}
        if failed_only:
            members["failed_only"] = True
        return self._conn.call("results", members, retry_safe=True)


class Job:
    """A job on the master: ``id``; ``name`` and ``total`` (tasks this
    client submitted) when this client submitted it, else None."""

    def __init__(self, client: Client, job_id: int, name: Optional[str] = None,
                 total: Optional[int] = None) -> None:
        self.client = client
        self.id = job_id
        self.name = name
        self.total = total

    def __repr__(self) -> str:
        return f"<ztask.Job {self.id}>"

    def status(self) -> JobRecord:
        """The job's counters now."""
        return self.client._status(self.id)

    def wait(self, timeout: Optional[float] = None,
             progress: Optional[Callable[[JobRecord], None]] = None) -> JobRecord:
        """Waits until every task has finished and returns the job's final
        record (check ``["failed"]``/``["state"]``: failed tasks do not
        raise). ``progress`` is called with each record seen, about five
        times a second. ``timeout`` (seconds) raises WaitTimeout; the job
        keeps running. A master restart while waiting is ridden out (the
        status request is resent within the client's timeout)."""
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        rec: Optional[JobRecord] = None
        while True:
            asked = time.monotonic()
            hold = _clip(WAIT_POLL, deadline)
            try:
                rec = self.client._status(self.id, hold, deadline)
            except DeadlineReached:
                # No answer by the timeout (and the grace): said with the
                # last record seen, as a timeout between requests is.
                raise self._wait_timeout(timeout, rec) from None
            if progress is not None:
                progress(rec)
            if job_finished(rec):
                return rec
            if timeout is not None and time.monotonic() - start >= timeout:
                raise self._wait_timeout(timeout, rec)
            # A master older than wait_ms answers at once: the protocol asks
            # clients to pause for the rest of the hold, or they would spin.
            rest = asked + hold - time.monotonic()
            if rest > 0:
                time.sleep(rest)

    def _wait_timeout(self, timeout: Optional[float], rec: Optional[JobRecord]) -> WaitTimeout:
        counts = ("" if rec is None else f" ({finished_count(rec)}/{rec['total']} finished, "
                  f"{rec['failed']} failed)")
        return WaitTimeout(f"job {self.id} did not finish within {timeout:g} s{counts}; it "
                           "keeps running", rec, self.id)

    def results(self, failed_only: bool = False, *, after: int = 0,
                limit: Optional[int] = None) -> Iterator[TaskRecord]:
        """Every task's record in task order, unfinished ones included (as
        ``ztask results --json``), read page by page as you iterate.
        ``failed_only``: only tasks that failed or were cancelled.

        ``after``: a task id (a record's ``"task"``, the TASK column of
        ``ztask results``); only the tasks after it come, so a reader that
        kept the last id it handled carries on from there, as the CLI pages
        with the protocol's ``after`` cursor. 0 (the default) is from the
        first task. ``limit``: at most this many records (``ztask results
        --limit``); None is all of them. Raises UsageError for a value that
        is not an int >= 0 (``limit`` >= 1) before anything is sent."""
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise UsageError(f"after= wants a task id (an int >= 0), got {after!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise UsageError(f"limit= wants an int >= 1 or None, got {limit!r}")
        return self._results_pages(failed_only, after, limit)

    def _results_pages(self, failed_only: bool, after: int,
                       limit: Optional[int]) -> Iterator[TaskRecord]:
        left = limit
        while left is None or left > 0:
            rep = self.client._results(self.id, after, PAGE if left is None else min(PAGE, left),
                                       failed_only)
            tasks = rep["tasks"]
            if left is not None:
                tasks = tasks[:left]
                left -= len(tasks)
            yield from tasks
            # Bounded by the cursor, as cli_print_results: a page that
            # does not move it forward ends the reading.
            nxt = rep["next_after"]
            if nxt < 0 or not rep["tasks"] or nxt <= after:
                return
            after = nxt

    def as_completed(self, timeout: Optional[float] = None,
                     poll: float = STREAM_POLL) -> Iterator[TaskRecord]:
        """Yields each task's record once, when it has finished (done,
        failed or cancelled), until every task of the job has; streaming,
        with memory that does not grow with the job.

        How: each round (at most one per ``poll`` seconds, held by the
        master meanwhile, and at once when the job ends) reads the job's
        counters, and when more tasks have finished than were yielded, reads
        results from the oldest task not yet finished, only until the new
        ones are found. Tasks finishing out of task order (a retried or
        slow one) are remembered in a bitmap of task ids (1M ids: 125 KB).
        Within a page, records come in ``finished`` order. ``timeout``
        (seconds) raises WaitTimeout. Works on a job still open (the
        futures' job): it ends once the job is closed and all have finished.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        low = 0              # every task id <= low has finished and been yielded
        seen = _IdSet()      # ids > low already yielded
        yielded = 0
        hold = 0.0
        rec: Optional[JobRecord] = None
        while True:
            hold = _clip(hold, deadline)
            try:
                rec = self.client._status(self.id, hold, deadline)
            except DeadlineReached:
                # Its own WaitTimeout, not chained to the transport's
                # internal exception (as Job.wait).
                raise _not_all_in_time(self.id, rec) from None
            target = finished_count(rec)
            after, in_prefix = low, True
            while yielded < target:
                # Read a little more than the new ones: unfinished and
                # already yielded tasks sit between them.
                limit = min(PAGE, 2 * (target - yielded) + 100)
                rep = self.client._results(self.id, after, limit)
                new = []
                for task in rep["tasks"]:
                    tid = task["task"]
                    if task["status"] not in FINAL_STATES:
                        in_prefix = False
                        continue
                    if tid not in seen:
                        new.append(task)
                        if not in_prefix:
                            seen.add(tid)
                    if in_prefix:
                        low = tid
                seen.forget_through(low)
                new.sort(key=lambda t: t["finished"] or 0.0)
                for task in new:
                    yielded += 1
                    yield task
                if rep["next_after"] < 0:
                    break
                after = rep["next_after"]
            if rec["closed"] and target >= rec["total"] and yielded >= rec["total"]:
                return
            _check_deadline(deadline, self.id, rec)
            hold = poll

    def _in_order(self, deadline: Optional[float], poll: float) -> Iterator[TaskRecord]:
        """Finished task records in task order (map's order): reads only
        as many records as the counters say may have finished, and only the
        head of the line while it is still running."""
        after = yielded = 0
        head_waiting = False
        hold = 0.0
        rec: Optional[JobRecord] = None
        while True:
            try:
                rec = self.client._status(self.id, _clip(hold, deadline), deadline)
            except DeadlineReached:
                # Its own WaitTimeout, not chained to the transport's
                # internal exception (as Job.wait).
                raise _not_all_in_time(self.id, rec) from None
            ready = finished_count(rec) - yielded
            hold = poll
            if ready > 0:
                limit = 1 if head_waiting else min(PAGE, ready)
                tasks = self.client._results(self.id, after, limit)["tasks"]
                head_waiting = False
                for task in tasks:
                    if task["status"] not in FINAL_STATES:
                        head_waiting = True
                        break
                    after = task["task"]
                    yielded += 1
                    yield task
                if not head_waiting and len(tasks) == limit:
                    hold = 0.0   # more may be ready: no pause
            if rec["closed"] and yielded >= rec["total"]:
                return
            _check_deadline(deadline, self.id, rec)

    def cancel(self, index: Optional[int] = None, *, with_dependants: bool = False) -> int:
        """Cancels the job's unfinished tasks (or only the task with that
        index); running ones are killed. Returns how many were cancelled.
        Jobs that depend on this one (``after=``) then end dep_failed;
        ``with_dependants`` cancels them too, and theirs, and so on."""
        members: Dict[str, Any] = {"job": self.id}
        if index is not None:
            members["index"] = index
        if with_dependants:
            if index is not None:
                raise UsageError("with_dependants= goes with a whole job, not one task")
            members["with_dependants"] = True
        return self.client._conn.call("cancel", members)["count"]

    def forget(self) -> int:
        """Deletes a finished job and its results from the master (1), or 0."""
        return self.client._conn.call("forget", {"job": self.id})["count"]

    def retry(self, failed: bool = True, cancelled: bool = True,
              indexes: Optional[Iterable[int]] = None) -> int:
        """Puts the job's failed and/or cancelled tasks (only those of
        ``indexes``, when given) back in the queue as new attempts, in this
        same job, which runs again (``wait`` follows it). Returns how many
        were put back (``ztask retry``)."""
        if not failed and not cancelled:
            raise UsageError("retry needs failed=True, cancelled=True or both")
        members: Dict[str, Any] = {"job": self.id}
        if not (failed and cancelled):
            members["failed" if failed else "cancelled"] = True
        if indexes is not None:
            members["indexes"] = [int(i) for i in indexes]
        return self.client._conn.call("retry", members)["count"]

    def hold(self, index: Optional[int] = None) -> int:
        """Holds the job's queued tasks (and those it queues later) or one
        task: they are not dispatched until ``release``; running ones
        finish. Stored by the master. Returns how many were held."""
        return self._steer("hold", index)

    def release(self, index: Optional[int] = None) -> int:
        """Releases what ``hold`` held (the whole job: every held task of
        it). Returns how many were released."""
        return self._steer("release", index)

    def _steer(self, type_: str, index: Optional[int]) -> int:
        members: Dict[str, Any] = {"job": self.id}
        if index is not None:
            members["index"] = index
        return self.client._conn.call(type_, members)["count"]

    def set_priority(self, priority: int) -> int:
        """Gives every unfinished task of the job this priority (higher
        first); returns how many were queued."""
        return self.client._conn.call("priority", {"job": self.id,
                                                   "priority": priority})["count"]

    def set_max_running(self, max_running: int) -> None:
        """At most that many of the job's tasks run at once (0: no limit)."""
        self.client._conn.call("limit", {"job": self.id, "max_running": max_running})

    def show(self) -> JobRecord:
        """The job's record with ``definition`` (what it was submitted as:
        command line or client, user, host, cwd) and ``first_spec``."""
        return self.client._conn.call("show", {"job": self.id}, retry_safe=True)["jobs"][0]


class _IdSet:
    """Task ids above a moving floor, as a bitmap: memory follows the
    spread of the ids held (an id and its bit: 1/8 byte), not their count,
    and forgetting everything under the floor is a slice."""

    def __init__(self) -> None:
        self.origin = 0          # id of bit 0; a multiple of 8
        self.bits = bytearray()

    def add(self, tid: int) -> None:
        k = tid - self.origin
        if k >= 8 * len(self.bits):
            self.bits.extend(bytes(k // 8 + 1 - len(self.bits)))
        self.bits[k // 8] |= 1 << (k % 8)

    def __contains__(self, tid: int) -> bool:
        k = tid - self.origin
        return 0 <= k < 8 * len(self.bits) and bool(self.bits[k // 8] & (1 << (k % 8)))

    def forget_through(self, floor: int) -> None:
        """Drops what lies at or below floor (whole bytes only)."""
        drop = min((floor + 1 - self.origin) // 8, len(self.bits))
        if drop > 0:
            del self.bits[:drop]
            self.origin += 8 * drop
        if not self.bits:
            self.origin = (floor + 1) // 8 * 8


def _job_ids(what: str, refs: JobRefs) -> List[int]:
    """The job ids of a submit's after=/after_any=/after_each=."""
    if refs is None:
        return []
    if isinstance(refs, (Job, int)) and not isinstance(refs, bool):
        refs = [refs]
    ids = []
    for ref in refs:   # type: ignore[union-attr]
        job_id = ref.id if isinstance(ref, Job) else ref
        if not isinstance(job_id, int) or isinstance(job_id, bool) or job_id < 1:
            raise UsageError(f"{what}= wants jobs or job ids, got {ref!r}")
        ids.append(job_id)
    if len(ids) > 64:
        raise UsageError("a job may depend on at most 64 jobs")
    return ids


def _definition() -> Dict[str, Any]:
    """What ``Job.show`` reports a job was submitted as, from Python."""
    import getpass
    import socket
    argv = [a.encode("utf-8", "replace").decode("utf-8") for a in sys.argv[:64]]
    d: Dict[str, Any] = {"client": "python", "argv": argv}
    if len(json.dumps(argv)) > 32 * 1024:   # the master takes 64 KiB in all
        d = {"client": "python", "argv_omitted": True}
    try:
        d["user"] = getpass.getuser()
    except Exception:   # no user name for this uid: leave it out
        pass
    d["host"] = socket.gethostname()
    try:
        d["cwd"] = os.getcwd()
    except OSError:
        pass
    return d


def _task_ref(task: TaskRef) -> Dict[str, int]:
    if isinstance(task, tuple) and len(task) == 2:
        return {"job": int(task[0]), "index": int(task[1])}
    if isinstance(task, int) and not isinstance(task, bool):
        return {"task": task}
    if isinstance(task, str):
        job, dot, index = task.partition(".")
        if job.isdigit() and (not dot or index.isdigit()):
            return {"job": int(job), "index": int(index)} if dot else {"task": int(job)}
    raise UsageError(f"{task!r} is not a task id, (job, index) or 'JOB.INDEX'")


def _clip(hold: float, deadline: Optional[float]) -> float:
    return hold if deadline is None else max(0.0, min(hold, deadline - time.monotonic()))


def _not_all_in_time(job_id: int, rec: Optional[JobRecord]) -> WaitTimeout:
    """The WaitTimeout of a stream (as_completed, map) past its deadline;
    rec is the last record seen (None: no answer came)."""
    counts = "" if rec is None else f" ({finished_count(rec)}/{rec['total']} finished)"
    return WaitTimeout(f"job {job_id}: not every task finished in time{counts}; it keeps "
                       "running", rec, job_id)


def _check_deadline(deadline: Optional[float], job_id: int, rec: Optional[JobRecord]) -> None:
    """Raises WaitTimeout once deadline has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        raise _not_all_in_time(job_id, rec)


def _raise(e: BaseException) -> Any:
    raise e
