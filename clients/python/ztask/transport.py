"""One request, one reply, with the master's API socket (docs/protocol.md
section 7): the Python twin of cli/client.c.

A ZMQ DEALER connected to tcp://HOST:PORT carries one request at a time.
Each call waits at most ``timeout`` seconds for its reply (plus the time
the request asks the master to hold it, ``hold``), counting from the send;
the connect is inside that time. ZMQ_IMMEDIATE is not set, so "master
down", "master slow" and "wrong port" all end the same way: after the
timeout, with UnreachableError.

A late reply must never be taken as the answer to the next request: after a
timeout (or an interrupt) the socket is closed with linger 0 and a fresh one
is made for the next call. Read-only requests may be resent on a fresh
socket inside their timeout, every third of it (at least every second),
when the first copy may be lost: its connection closed (a master that
restarted lost it) or never came up; asking again is harmless. A
connection that stayed up since the send means the master holds the
request: it is waited for until the timeout, never asked again (a slow
master only gets slower with copies, and closing the socket would throw
its reply away).
Requests that change state (cancel, drain, forget) are sent once. A submit
carries an idempotency key (new_submit_key, one per batch: docs/protocol.md,
"Idempotent submits"), which makes it safe to resend the same way: a master
that already took it answers the copy as the first and adds nothing.

``busy`` (the master holds as many unread replies as it keeps:
docs/protocol.md, "Pipelining") means the request was not run, so any
request, a changing one too, is sent again on the same socket after a
pause of 50 ms doubling to 1 s (each drawn between half and all of that,
so clients refused together do not come back together), until the timeout;
only then is BusyError raised, with the master's message and how many
answers said so; also when the timeout comes while waiting for the answer
to a copy sent after a "busy" (a master that answered is not unreachable).

A caller with a deadline of its own (``Job.wait(timeout=...)``) passes it
as ``until``: the call ends at whichever comes first, never a whole
timeout past ``until``; there it raises DeadlineReached, or BusyError when
the master said "busy", or UnreachableError when no socket of this
connection ever reached it (cli/client.h says the same of the CLI).

CURVE: pyzmq does the handshake; what it does not do is tell us when the
master refuses it: the request would just wait out the timeout. So every
socket gets a monitor, as in cli/client.c: a handshake refused by the master
(HANDSHAKE_FAILED_AUTH), a mechanism mismatch (HANDSHAKE_FAILED_PROTOCOL) or
two failed handshakes in a row with no detail (a wrong master key: the
master cannot read our HELLO) raise AuthError at once.

Threads: a Connection may be shared; a lock lets one call through at a time
(a ZeroMQ socket may change threads, never be used by two at once).
"""

from __future__ import annotations

import json
import random
import secrets
import struct
import threading
import time
from typing import Any, Dict, Optional

import zmq

from .config import Settings
from .errors import AuthError, BusyError, RefusedError, UnreachableError, UsageError

PROTOCOL_VERSION = 1
MAX_API_MSG = 32 * 1024 * 1024   # PROTO_MAX_API_MSG
RESEND_MIN = 1.0                 # seconds; a busy master is not asked ten times a second
NO_DETAIL_FAILURES = 2           # see cli/client.c: one such failure may be a cut connection
BUSY_PAUSE_MIN = 0.05            # seconds; the pauses after "busy" double from here...
BUSY_PAUSE_MAX = 1.0             # ...to here, as cli/client.c's
# The pauses' jitter, from the OS, not the random module's shared
# generator: a program that seeds that one (random.seed(0) in every
# process, for reproducible runs) would get its clients' pauses in step,
# and every pause would move its own sequence on.
_JITTER = random.SystemRandom()

_MONITOR_EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                   | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                   | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                   | zmq.EVENT_DISCONNECTED)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode(obj: Any) -> bytes:
    """Compact JSON as the protocol wants it: UTF-8 (a lone surrogate
    cannot travel), finite numbers. Raises UsageError for what cannot."""
    try:
        return _ENCODER.encode(obj).encode("utf-8")
    except (TypeError, ValueError) as e:   # UnicodeEncodeError is a ValueError
        raise UsageError(f"cannot encode as JSON: {e}") from None


class DeadlineReached(Exception):
    """No reply from a master this connection has reached, by the caller's
    ``until``, which came before the timeout (``busy`` then is BusyError,
    never reached UnreachableError). Internal: the caller turns it into
    its own error (WaitTimeout, with the job's last record)."""


def new_submit_key() -> str:
    """A fresh idempotency key base: 128 random bits in hex. Each request
    gets the base, a dot and its number, like ztask submit."""
    return secrets.token_hex(16)


class Connection:
    """The client's link to one master; see the module docstring."""

    def __init__(self, settings: Settings, ctx: Optional[zmq.Context] = None) -> None:
        self.settings = settings
        self.ctx = ctx or zmq.Context.instance()
        self.endpoint = f"tcp://{settings.address}"
        self._sock: Optional[zmq.Socket] = None
        self._monitor: Optional[zmq.Socket] = None
        self._no_detail = 0
        self._up = False
        self._drops = 0
        # Some socket of this connection ever connected (TCP): by the
        # caller's deadline, a master never reached is unreachable, not slow.
        self._reached = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._close_socket()

    def call(self, type_: str, members: Optional[Dict[str, Any]] = None, *,
             retry_safe: bool = False, hold: float = 0.0, body: Optional[bytes] = None,
             until: Optional[float] = None) -> Dict[str, Any]:
        """Sends request ``type_`` with ``members`` (or a pre-encoded JSON
        object ``body``, for big submits) and returns the reply's members
        (a dict, ``ok`` true). Raises UnreachableError, RefusedError or
        AuthError. Blocks up to the timeout plus ``hold`` seconds, and not
        past ``until`` (time.monotonic(); None = no bound): DeadlineReached
        then."""
        frame = body if body is not None else encode({"v": PROTOCOL_VERSION, "type": type_,
                                                      **(members or {})})
        with self._lock:
            try:
                return self._exchange(type_, frame, retry_safe, hold, until)
            except zmq.ZMQError as e:
                self._close_socket()
                raise UnreachableError(f"cannot talk to the master at {self.settings.address}: "
                                       f"{e}") from None
            except BaseException:
                # Whatever went wrong (even Ctrl-C), a reply may still come
                # for this request: this socket must never be read again.
                self._close_socket()
                raise

    # ---- one exchange ----

    def _exchange(self, type_: str, frame: bytes, retry_safe: bool, hold: float,
                  until: Optional[float]) -> Dict[str, Any]:
        timeout = self.settings.timeout
        start = time.monotonic()
        deadline = start + timeout + hold
        # The caller's deadline only moves the end; attempt (the resend
        # pace) stays that of the timeout.
        cut = until is not None and until < deadline
        if cut:
            deadline = until
        attempt = max(timeout / 3, RESEND_MIN) + hold if retry_safe else timeout + hold
        busy = 0             # "busy" answers so far
        last_busy = None     # the last one
        while True:
            sock = self._open_socket()
            sock.send(frame, zmq.DONTWAIT)
            drops = self._drops
            until = min(time.monotonic() + attempt, deadline)
            ready = self._wait(until)
            # The master has it while the connection stays up: wait on,
            # an attempt at a time; a drop seen at the end of one is asked
            # again.
            while not ready and until < deadline and self._held_since(drops):
                until = min(until + attempt, deadline)
                ready = self._wait(until)
            if ready:
                frames = sock.recv_multipart(zmq.DONTWAIT)
                if len(frames) != 1:
                    raise RefusedError(f"cannot read the master's reply to {type_}: more than "
                                       "one frame")
                try:
                    return self._decode(frames[0], type_)
                except BusyError as e:
                    # Not run (master/conns.c answers it in the place of a
                    # request it did not read; api.c, of a query whose
                    # answer it threw away): asking again is safe, on this
                    # socket (its answer came; nothing more will), after a
                    # pause, up to the deadline.
                    cap = min(BUSY_PAUSE_MIN * 2 ** min(busy, 16), BUSY_PAUSE_MAX)
                    busy += 1
                    last_busy = e
                    self._wait(min(time.monotonic() + _JITTER.uniform(cap / 2, cap), deadline))
                    if time.monotonic() >= deadline:
                        self._ran_out(cut, busy, last_busy, deadline - start)
                    continue
            # No reply in time: this socket may still get one, later.
            self._close_socket()
            if time.monotonic() >= deadline:
                self._ran_out(cut, busy, last_busy, deadline - start)

    def _ran_out(self, cut: bool, busy: int, last_busy: Optional[BusyError],
                 waited: float) -> None:
        """Raises what a call that got no reply by its end is (waited:
        seconds from its start to that end; cut: the caller's deadline,
        which came before the timeout): the master's last "busy" when one
        came (a master that answered is not unreachable, even if the copy
        sent after the pause got nothing in time; by the caller's deadline
        too, as the CLI's exit 4), else, by the caller's deadline, the
        deadline when some socket of this connection ever reached the
        master (else it is unreachable: nothing says the job is slow),
        else no reply at all."""
        waited = round(waited, 1)
        if last_busy is not None:
            raise BusyError(self._still_busy(last_busy.message, busy, waited, cut),
                            last_busy.code) from None
        if cut and self._reached:
            raise DeadlineReached(f"no reply from the master at {self.settings.address} before "
                                  "the caller's deadline")
        raise UnreachableError(
            f"cannot reach the master at {self.settings.address} (no reply within "
            f"{waited:g} s); is ztask-master running? set master= or ZTASK_MASTER")

    @staticmethod
    def _still_busy(message: str, answers: int, waited: float, cut: bool = False) -> str:
        """The last "busy" answer's message ("MESSAGE (busy)") once the
        timeout (or the caller's deadline: cut) has run out: how long it
        stayed so, still ending with the code as every refusal does."""
        head = message[:-len(" (busy)")] if message.endswith(" (busy)") else message
        why = "when the wait's time ran out" if cut else "a longer timeout= waits longer"
        return f"{head}; still busy after {answers} answers in {waited:g} s ({why}) (busy)"

    def _open_socket(self) -> zmq.Socket:
        if self._sock is not None:
            return self._sock
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_API_MSG)
        if ":" in self.settings.host:
            sock.setsockopt(zmq.IPV6, 1)
        if self.settings.curve:
            server, public, secret = self.settings.curve
            sock.curve_serverkey = server.encode()
            sock.curve_publickey = public.encode()
            sock.curve_secretkey = secret.encode()
        self._sock = sock
        self._no_detail = 0
        self._up = False      # a handshake succeeded and the connection has not closed since
        self._drops = 0       # connections that closed after their handshake
        # Before connect, or the first handshake's events are lost.
        self._monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
        self._monitor.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        return sock

    def _close_socket(self) -> None:
        if self._monitor is not None:
            if self._sock is not None:
                self._sock.disable_monitor()
            self._monitor.close()
            self._monitor = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _wait(self, until: float) -> bool:
        """True when the socket is readable before ``until`` (monotonic)."""
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return False
            ready = dict(poller.poll(max(1, int(left * 1000))))
            if self._monitor in ready:
                self._read_monitor()
            if self._sock in ready:
                return True

    def _held_since(self, drops: int) -> bool:
        """True when the connection has stayed up since ``self._drops`` was
        ``drops``: what was sent then is in the master's hands."""
        self._read_monitor()
        return self._up and self._drops == drops

    def _read_monitor(self) -> None:
        """Reads pending handshake events; raises AuthError when one failed
        for good."""
        monitor = self._monitor
        assert monitor is not None   # made with the socket
        curve = self.settings.curve is not None
        where = self.settings.address
        while True:
            try:
                frames = monitor.recv_multipart(zmq.DONTWAIT)
            except zmq.Again:
                return
            if len(frames[0]) < 6:
                continue
            event, value = struct.unpack("=HI", frames[0][:6])
            why = None
            if event == zmq.EVENT_CONNECTED:
                self._reached = True
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._no_detail = 0
                self._up = True
            elif event == zmq.EVENT_DISCONNECTED:
                self._drops += 1 if self._up else 0
                self._up = False
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                why = (f"the master at {where} refused this client's key (status {value}): add "
                       "its .pub file to the master's --clients list, then send the master "
                       "SIGHUP")
            elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH and not curve:
                    why = (f"the master at {where} requires CURVE keys: give curve_secret and "
                           "master_key (or ZTASK_CURVE_SECRET and ZTASK_MASTER_KEY, or the "
                           "config file)")
                elif value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                    why = f"the master at {where} does not use CURVE, but this client was given keys"
                else:
                    why = (f"the handshake with {where} failed (protocol error {value:#x}); is "
                           "master_key the master's public key?")
            elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                self._no_detail += 1
                if self._no_detail >= NO_DETAIL_FAILURES:
                    why = (f"the CURVE handshake with {where} failed; is master_key the "
                           "master's public key?" if curve else
                           f"the master at {where} hangs up during the handshake: it probably "
                           "requires CURVE keys (give curve_secret and master_key, or set "
                           "ZTASK_CURVE_SECRET and ZTASK_MASTER_KEY)")
            if why:
                raise AuthError(f"authentication failed: {why}")

    def _decode(self, frame: bytes, type_: str) -> Dict[str, Any]:
        try:
            rep = json.loads(frame)
        except ValueError:   # UnicodeDecodeError too
            rep = None
        if (not isinstance(rep, dict) or rep.get("v") != PROTOCOL_VERSION
                or rep.get("type") != "reply" or not isinstance(rep.get("ok"), bool)):
            raise RefusedError(f"cannot read the master's reply to {type_}: not a version "
                               f"{PROTOCOL_VERSION} reply (is it a ztask master of the same "
                               "version?)")
        if rep["ok"]:
            return rep
        err = rep["error"] if isinstance(rep.get("error"), dict) else {}
        code = err.get("code") if isinstance(err.get("code"), str) else None
        message = err.get("message") if isinstance(err.get("message"), str) else ""
        message = f"{message or 'request refused'} ({code or 'error'})"
        if code == "auth":
            raise AuthError(f"authentication failed: {message}", code)
        if code == "busy":
            raise BusyError(message, code)
        raise RefusedError(message, code)
