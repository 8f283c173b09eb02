"""Exceptions of the ztask client.

Every exception derives from :class:`ZtaskError` and carries ``exit_code``,
the exit code the ``ztask`` CLI ends with in the same situation (README
"Exit codes", docs/cli.md), so a script can ``sys.exit(e.exit_code)``.
A refusal by the master also carries the master's stable error ``code``
(docs/protocol.md section 4: ``not_found``, ``bad_field``, ``bad_state``,
``auth``, ``busy``, ...) and its one-line ``message``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

EXIT_TASKS_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 4
EXIT_TIMEOUT = 5
EXIT_AUTH = 6


class ZtaskError(Exception):
    """Base class. ``message`` is one line for a human; ``code`` is the
    master's error code when the master refused, else None."""

    exit_code = EXIT_REFUSED
    #: Set when a submit failed after its first batch: the job left
    #: incomplete (and open) and how many tasks it got.
    job: Optional[int] = None
    submitted: Optional[int] = None

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class UsageError(ZtaskError, ValueError):
    """Bad arguments or settings (a malformed ``master``, a key file that
    holds no key, a spec the client cannot encode); nothing was sent.
    Also a ValueError. CLI exit code 2."""

    exit_code = EXIT_USAGE


class UnreachableError(ZtaskError, ConnectionError):
    """No reply from the master within the request timeout, or no
    connection to it by a wait's own timeout. CLI exit code 3."""

    exit_code = EXIT_UNREACHABLE


class RefusedError(ZtaskError):
    """The master refused the request (``code`` says why), or sent a reply
    the client cannot read (``code`` is None). CLI exit code 4."""

    exit_code = EXIT_REFUSED


class BusyError(RefusedError):
    """The master answered ``busy``: it did not run the request, because
    clients hold too many unread replies (this connection's, or all
    clients' together: docs/protocol.md, "Pipelining"). Nothing changed.
    The client has already sent the request again and again (pauses of
    50 ms doubling to 1 s) for the whole of its ``timeout``: this is
    raised only when the master was still busy then. Try again later, or
    give the client a longer ``timeout``. CLI exit code 4, as any
    refusal."""


class AuthError(ZtaskError, PermissionError):
    """CURVE authentication failed (the master refused our key, wants keys
    we do not have, or has another key than ``master_key``), or the master
    answered ``auth``. Raised as soon as the handshake fails, not after the
    timeout. CLI exit code 6."""

    exit_code = EXIT_AUTH


class WaitTimeout(ZtaskError, TimeoutError):
    """``Job.wait(timeout=...)`` (or another wait) ran out before the job
    finished; the job keeps running. ``record`` is the job's last record
    (its ``job`` member is the id; None when no answer came before the
    timeout), ``job`` the id. CLI exit code 5."""

    exit_code = EXIT_TIMEOUT

    def __init__(self, message: str, record: Optional[Mapping[str, Any]] = None,
                 job: Optional[int] = None) -> None:
        super().__init__(message)
        self.record = record
        if record is not None:
            self.job = record.get("job")
        elif job is not None:   # no answer came before the timeout
            self.job = job


class TaskFailed(ZtaskError):
    """A task of ``Client.map`` or a future's task ended ``failed`` or
    ``cancelled``. ``record`` is its task record (docs/protocol.md section
    6: ``error``, ``exit_code``, ``stderr``...). CLI exit code 1."""

    exit_code = EXIT_TASKS_FAILED

    def __init__(self, record: Mapping[str, Any]) -> None:
        why = record.get("error") or (f"exit code {record.get('exit_code')}"
                                      if record.get("exit_code") is not None else "")
        super().__init__(f"task {record.get('task')} (job {record.get('job')}, index "
                         f"{record.get('index')}) {record.get('status')}"
                         + (f": {why}" if why else ""))
        self.record = record
