"""concurrent.futures on ztask: an Executor whose futures are tasks.

``Executor.submit("square", 7)`` adds one task (``{"fn":"square",
"args":7}``) to the executor's job and returns a Future of its result. The
job is created by the first submit and stays open (``more: true``) until
shutdown() closes it, so a thousand futures are one job in ``ztask jobs``,
not a thousand. A collector thread, with its own socket, streams the job's
finished tasks (``Job.as_completed``) and resolves the futures: the result
of a task that is done, TaskFailed for one that failed or was cancelled.

Futures are running from the moment the master accepted their task, so
``Future.cancel()`` returns False; ``executor.job.cancel()`` cancels the
tasks (their futures then raise TaskFailed). ``map`` sends one job of all
the items in batches (``Client.map``), not one request per item.

Threads: submit() may be called from any thread (one at a time reaches the
master); the collector thread is a daemon and ends once the job is closed
and every task has finished, or on the first error, which every pending
future then raises (and later submits too).
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Dict, Iterable, Iterator, Optional

from .client import Client, Job
from .errors import TaskFailed, UsageError
from .transport import new_submit_key

#: How often the collector looks for finished tasks, at most (seconds).
COLLECT_POLL = 0.05


def fn_args(args: tuple, kwargs: dict) -> Dict[str, Any]:
    """submit(fn, *args, **kwargs) as a spec's args: one value, a list, an
    object, or none."""
    if args and kwargs:
        raise UsageError("give the task's args positionally or as keywords, not both")
    if kwargs:
        return {"args": kwargs}
    if len(args) == 1:
        return {"args": args[0]}
    return {"args": list(args)} if args else {}


class Executor(concurrent.futures.Executor):
    """Futures backed by one ztask job (see the module docstring).
    ``options`` are Client.submit()'s (name, timeout, retries, priority,
    env, cwd, stdin, output_cap, require, task_name) and apply to every
    task."""

    def __init__(self, client: Client, *, poll: float = COLLECT_POLL, **options: Any) -> None:
        self.client = client
        self.poll = poll
        self.name = options.pop("name", None)
        self.options = options
        self.job: Optional[Job] = None
        self._spec_options = _spec_options(options)
        self._lock = threading.Lock()
        self._futures: Dict[int, concurrent.futures.Future] = {}
        self._next_index = 0
        self._key = new_submit_key()   # each submit's key: this, a dot, its index
        self._shutdown = False
        self._broken: Optional[BaseException] = None
        self._collector: Optional[threading.Thread] = None

    def submit(self, fn: str, /, *args: Any,  # type: ignore[override]  # fn is a name
               **kwargs: Any) -> concurrent.futures.Future:
        """Adds one task calling worker function ``fn`` and returns its
        Future. One positional argument is the task's args, several a list,
        keyword arguments an object. Blocks for one request."""
        spec: Dict[str, Any] = {"fn": fn, **fn_args(args, kwargs), **self._spec_options}
        with self._lock:
            if self._broken is not None:
                raise self._broken
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
            # Never reused, even when the request fails: a task the master
            # took before a timeout must not resolve a later future.
            index = self._next_index
            self._next_index += 1
            spec["index"] = index
            future: concurrent.futures.Future = concurrent.futures.Future()
            future.set_running_or_notify_cancel()
            # Registered before the request: the collector (which needs this
            # lock) must find it, however fast the task runs.
            self._futures[index] = future
            try:
                members: Dict[str, Any] = {"job": self.job.id if self.job else 0, "more": True,
                                           "tasks": [spec], "key": f"{self._key}.{index}"}
                if self.job is None and self.name is not None:
                    members["name"] = self.name
                rep = self.client._conn.call("submit", members, retry_safe=True)
            except BaseException:
                del self._futures[index]
                raise
            if self.job is None:
                self.job = Job(self.client, rep["job"], name=self.name)
                self._collector = threading.Thread(target=self._collect, daemon=True,
                                                   name=f"ztask-collector-{rep['job']}")
                self._collector.start()
            return future

    def map(self, fn: str, *iterables: Iterable[Any],  # type: ignore[override]
            timeout: Optional[float] = None,
            chunksize: int = 1) -> Iterator[Any]:
        """Results of ``fn`` over the items (or over zip(*iterables), each
        tuple a list of args), in order, as one job sent in batches; see
        Client.map. ``chunksize`` is accepted and ignored."""
        items = iterables[0] if len(iterables) == 1 else (list(t) for t in zip(*iterables))
        return self.client.map(fn, items, timeout=timeout, name=self.name, **self.options)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Closes the job (no more submits); with ``cancel_futures``, cancels
        its unfinished tasks; with ``wait``, waits for every future."""
        with self._lock:
            if self._shutdown:
                job = None
            else:
                self._shutdown = True
                job = self.job
            if job is not None and self._broken is None:
                self.client._conn.call("submit", {"job": job.id, "more": False, "tasks": []})
        if job is not None and cancel_futures:
            job.cancel()
        if wait and self._collector is not None:
            self._collector.join()

    def _collect(self) -> None:
        # Its own socket: the held status requests must not make submit() wait.
        assert self.job is not None   # started once the job exists
        reader = self.client._twin()
        try:
            for rec in Job(reader, self.job.id).as_completed(poll=self.poll):
                with self._lock:
                    future = self._futures.pop(rec["index"] or 0, None)
                if future is None:
                    continue   # a task whose submit failed on our side
                if rec["status"] == "done":
                    future.set_result(rec["result"])
                else:
                    future.set_exception(TaskFailed(rec))
        except BaseException as e:
            with self._lock:
                self._broken = e
                pending, self._futures = self._futures, {}
            for future in pending.values():
                future.set_exception(e)
        finally:
            reader.close()


def _spec_options(options: Dict[str, Any]) -> Dict[str, Any]:
    from .specs import task_options
    try:
        return task_options(**options)
    except TypeError as e:
        raise UsageError(f"unknown executor option: {e}") from None

