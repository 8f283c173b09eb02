"""Errors carry the CLI's exit code and the master's error code."""

import random
import threading
import time

import pytest
import zmq

import ztask
from conftest import scaled, unused_port

WAIT = scaled(60)


def test_a_master_that_does_not_answer_is_unreachable():
    c = ztask.Client(f"127.0.0.1:{unused_port()}", timeout=0.5)
    with pytest.raises(ztask.UnreachableError) as e:
        c.stats()
    assert e.value.exit_code == 3 and isinstance(e.value, ConnectionError)
    assert "cannot reach the master" in str(e.value)
    c.close()


def test_an_unknown_job_is_refused_with_not_found(running):
    c = running.client()
    with pytest.raises(ztask.RefusedError) as e:
        c.job(424242).wait()
    assert (e.value.code, e.value.exit_code) == ("not_found", 4)


def test_a_spec_the_master_refuses_names_the_field(running):
    c = running.client()
    with pytest.raises(ztask.RefusedError) as e:
        c.submit(fn="noop", retries=1000)
    assert e.value.code == "bad_field" and "retries" in e.value.message
    assert e.value.job is None      # refused in the first batch: no job was made


def test_a_submit_to_a_closed_job_is_bad_state(running):
    c = running.client()
    job = c.submit(fn="noop")
    with pytest.raises(ztask.RefusedError) as e:
        c.call("submit", job=job.id, tasks=[{"fn": "noop"}])
    assert e.value.code == "bad_state"


def test_a_failed_later_batch_names_the_incomplete_job(running):
    c = running.client()
    specs = ({"fn": "noop"} if i < 5000 else {"fn": "noop", "timeout": -1} for i in range(5001))
    with pytest.raises(ztask.RefusedError) as e:
        c.submit(specs=specs)
    assert e.value.code == "bad_field"
    assert e.value.submitted == 5000 and f"job {e.value.job} is incomplete" in str(e.value)
    st = c.job(e.value.job).status()
    assert st["total"] == 5000 and not st["closed"]
    assert c.job(e.value.job).cancel() >= 0


def test_a_wait_that_runs_out_raises_wait_timeout(running, tmp_path):
    c = running.client()
    gate = tmp_path / "gate"
    job = c.submit(["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done"])
    with pytest.raises(ztask.WaitTimeout) as e:
        job.wait(timeout=0.3)
    assert e.value.exit_code == 5 and isinstance(e.value, TimeoutError)
    assert e.value.job == job.id and e.value.record["finished"] is None
    with pytest.raises(ztask.WaitTimeout) as e:
        list(job.as_completed(timeout=0.3))
    assert e.value.job == job.id and e.value.record["job"] == job.id
    gate.touch()
    assert job.wait(timeout=WAIT)["state"] == "done"


@pytest.mark.parametrize("kwargs, match", [
    ({}, "exactly one of"),
    ({"fn": "noop", "argv": None, "shell": True}, "one string"),
    ({"fn": "noop", "array": "5-1"}, "reversed"),
    ({"fn": "noop", "array": "1-x"}, "not N, A-B"),
    ({"fn": "noop", "array": "1-5", "items": [1]}, "at most one"),
    ({"fn": "noop", "items": []}, "no tasks"),
    ({"fn": "echo", "args": {"a": 1}, "items": [1]}, "put '{}'"),
    ({"fn": "echo", "args": float("nan")}, "cannot encode"),
    ({"fn": "echo", "args": "\udc80"}, "cannot encode"),
    ({"command": "true", "args": 1}, "args= goes with fn="),
    ({"fn": "noop", "name": ""}, "name="),
])
def test_bad_arguments_are_usage_errors_before_anything_is_sent(kwargs, match):
    c = ztask.Client(f"127.0.0.1:{unused_port()}", timeout=0.2)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    with pytest.raises(ztask.UsageError, match=match) as e:
        c.submit(**kwargs)
    assert e.value.exit_code == 2 and isinstance(e.value, ValueError)
    # Nothing was sent: a send would have waited for the (absent) master.
    assert c._conn._sock is None
    c.close()


def test_replies_that_are_not_ztask_replies_are_refused_not_crashes():
    # A raw ROUTER plays a broken master: each request gets the next bad answer.
    answers = [[b"not json"], [b"[1]"], [b"\xff\xfe"], [b'{"v":2,"type":"reply","ok":true}'],
               [b'{"v":1,"type":"reply","ok":"yes"}'], [b'{"v":1,"type":"reply","ok":false}'],
               [b"{}", b"{}"]]
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def serve():
        for answer in answers:
            ident = router.recv_multipart()[0]
            router.send_multipart([ident] + answer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    c = ztask.Client(f"127.0.0.1:{port}", timeout=scaled(20))
    try:
        for answer in answers:
            with pytest.raises(ztask.RefusedError) as e:
                c.stats()
            assert e.value.exit_code == 4
            assert ("cannot read the master's reply" in e.value.message
                    or e.value.message == "request refused (error)"), e.value.message
    finally:
        c.close()
        t.join(scaled(20))
        router.close()


def test_a_slow_master_that_holds_the_request_is_waited_for_not_asked_again():
    """A stand-in master answers after 2.5 s of a 4.5 s timeout on a
    connection that stays up. Resending at 1.5 s closed the socket the
    answer was coming to: the call timed out."""
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    got = []

    def master():
        while router.poll(6000):
            ident, body = router.recv_multipart()
            got.append(body)
            if len(got) == 1:
                time.sleep(2.5)   # the slowness under test, not a synchronisation
                router.send_multipart([ident, b'{"v":1,"type":"reply","ok":true,'
                                              b'"stats":{"workers":0}}'])

    t = threading.Thread(target=master)
    t.start()
    c = ztask.Client(f"127.0.0.1:{port}", timeout=4.5)
    try:
        assert c.stats() == {"workers": 0}
        assert len(got) == 1
    finally:
        c.close()
        t.join()
        router.close()


BUSY = (b'{"v":1,"type":"reply","ok":false,"error":{"code":"busy","message":'
        b'"busy: clients have not read 128 MiB of replies, as much as the master holds; '
        b'this request was not run: read the replies you have and send it again shortly"}}')


class BusyMaster:
    """A raw ROUTER playing a master over its reply budget (docs/protocol.md,
    "Pipelining"): it answers ``busy`` to the first ``busy`` requests (all
    of them when None), then ``reply`` (None: nothing, ever). ``got``
    counts the requests; ``answered`` is set once it has sent ``reply``."""

    def __init__(self, busy, reply=None):
        self.busy, self.reply = busy, reply
        self.got = 0
        self.answered = threading.Event()
        self.stop = threading.Event()
        self.router = zmq.Context.instance().socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            if not self.router.poll(100):
                continue
            ident, _body = self.router.recv_multipart()
            self.got += 1
            if self.busy is None or self.got <= self.busy:
                self.router.send_multipart([ident, BUSY])
            elif self.reply is not None:
                # Set before the send: the client, woken by the reply, may
                # look at it before this thread runs again.
                self.answered.set()
                self.router.send_multipart([ident, self.reply])

    def close(self):
        self.stop.set()
        self.thread.join(scaled(20))
        self.router.close()


def test_a_busy_answer_is_sent_again_until_it_is_answered():
    # "busy" means not run: even a cancel (which changes state, and is
    # otherwise sent once) is sent again, after short pauses.
    m = BusyMaster(3, b'{"v":1,"type":"reply","ok":true,"count":2}')
    c = ztask.Client(f"127.0.0.1:{m.port}", timeout=scaled(20))
    try:
        assert c.job(3).cancel() == 2
        assert m.answered.is_set() and m.got == 4
    finally:
        c.close()
        m.close()


def test_the_busy_pauses_leave_the_programs_random_sequence_alone():
    # A program that seeds random for reproducible runs gets the same
    # numbers whether or not the master was busy (and its clients, all
    # seeded alike, do not pause in step).
    m = BusyMaster(3, b'{"v":1,"type":"reply","ok":true,"count":2}')
    c = ztask.Client(f"127.0.0.1:{m.port}", timeout=scaled(20))
    try:
        random.seed(1234)
        state = random.getstate()
        assert c.job(3).cancel() == 2 and m.got == 4
        assert random.getstate() == state
    finally:
        c.close()
        m.close()


def test_a_master_busy_until_the_timeout_raises_busy_error_then():
    m = BusyMaster(None)
    c = ztask.Client(f"127.0.0.1:{m.port}", timeout=2.0)
    try:
        t0 = time.monotonic()
        with pytest.raises(ztask.BusyError) as e:
            c.stats()
        took = time.monotonic() - t0
        assert took >= 2.0, f"gave up after {took:.2f} s of a 2 s timeout"
        assert 3 <= m.got <= 12, f"asked {m.got} times in 2 s"
        assert isinstance(e.value, ztask.RefusedError)
        assert (e.value.code, e.value.exit_code) == ("busy", 4)
        assert str(e.value) == (
            "busy: clients have not read 128 MiB of replies, as much as the master holds; "
            "this request was not run: read the replies you have and send it again shortly; "
            f"still busy after {m.got} answers in 2 s (a longer timeout= waits longer) (busy)")
    finally:
        c.close()
        m.close()


def test_a_master_that_said_busy_then_nothing_raises_busy_error_not_unreachable():
    # One "busy", then the copy sent after the pause is never answered: the
    # timeout comes while waiting for it. A master that answered is not
    # unreachable: BusyError (exit 4) with its words, as the CLI says.
    m = BusyMaster(1)
    c = ztask.Client(f"127.0.0.1:{m.port}", timeout=1.5)
    try:
        with pytest.raises(ztask.BusyError) as e:
            c.job(3).cancel()
        assert m.got == 2
        assert (e.value.code, e.value.exit_code) == ("busy", 4)
        assert str(e.value).endswith(
            "; still busy after 1 answers in 1.5 s (a longer timeout= waits longer) (busy)")
    finally:
        c.close()
        m.close()


def test_a_wait_ends_at_its_timeout_not_a_request_timeout_later():
    # Job.wait(timeout=1) against a master that takes the status request
    # and never answers, with an 8 s client timeout: the wait ends at its
    # own timeout (plus the grace for the last answer) with WaitTimeout,
    # not 8 s later with UnreachableError.
    m = BusyMaster(0)
    c = ztask.Client(f"127.0.0.1:{m.port}", timeout=8.0)
    try:
        t0 = time.monotonic()
        with pytest.raises(ztask.ZtaskError) as e:
            c.job(7).wait(timeout=1.0)
        took = time.monotonic() - t0
        assert isinstance(e.value, ztask.WaitTimeout), f"{e.value!r} after {took:.2f} s"
        assert 1.0 <= took < 2.5, f"took {took:.2f} s"
        assert e.value.exit_code == 5 and e.value.job == 7 and e.value.record is None
        assert str(e.value) == "job 7 did not finish within 1 s; it keeps running"
        with pytest.raises(ztask.WaitTimeout):
            list(c.job(7).as_completed(timeout=0.5))
        assert time.monotonic() - t0 < 4.0
    finally:
        c.close()
        m.close()


def test_a_wait_that_never_reaches_the_master_raises_unreachable_not_wait_timeout():
    # Job.wait(timeout=1) against a host that drops the packets (a
    # listener whose accept queue is full: the kernel drops every SYN
    # after it): no master was ever reached, so nothing says the job is
    # slow. UnreachableError (CLI exit 3, "cannot reach the master" and
    # what to set) at the wait's timeout, as `ztask wait --timeout` says;
    # it was WaitTimeout ("job 7 did not finish within 1 s").
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(2):   # one fills a backlog of 0; two to be sure
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    c = ztask.Client(f"127.0.0.1:{port}", timeout=600.0)
    try:
        with pytest.raises(ztask.ZtaskError) as e:
            c.job(7).wait(timeout=1.0)
        assert isinstance(e.value, ztask.UnreachableError), repr(e.value)
        assert e.value.exit_code == 3
        assert str(e.value).startswith(f"cannot reach the master at 127.0.0.1:{port} ")
        assert "ZTASK_MASTER" in str(e.value)
    finally:
        c.close()
        for f in fillers:
            f.close()
        listener.close()


def test_a_wait_the_master_answered_busy_until_its_timeout_raises_busy():
    # Job.wait(timeout=1) against a master that answers "busy" every time:
    # the busy refusal with the master's words (BusyError, CLI exit 4), as
    # when the client's own timeout comes first; it was WaitTimeout, which
    # reads as a slow job.
    m = BusyMaster(None)
    c = ztask.Client(f"127.0.0.1:{m.port}", timeout=8.0)
    try:
        with pytest.raises(ztask.ZtaskError) as e:
            c.job(7).wait(timeout=1.0)
        assert isinstance(e.value, ztask.BusyError), repr(e.value)
        assert e.value.exit_code == 4 and e.value.code == "busy"
        assert "when the wait's time ran out" in str(e.value)
        assert str(e.value).endswith(" (busy)")
    finally:
        c.close()
        m.close()


def test_a_stream_past_its_timeout_raises_wait_timeout_without_the_internal_one():
    # as_completed / map against a master that never answers: WaitTimeout
    # alone, as Job.wait raises it; not chained to the transport's internal
    # DeadlineReached ("During handling of the above exception, another
    # exception occurred" in every traceback).
    m = BusyMaster(0)
    c = ztask.Client(f"127.0.0.1:{m.port}", timeout=8.0)
    try:
        for run in (lambda: list(c.job(7).as_completed(timeout=0.3)),
                    lambda: list(c.job(7)._in_order(time.monotonic() + 0.3, 0.1))):
            with pytest.raises(ztask.WaitTimeout) as e:
                run()
            assert e.value.job == 7 and e.value.record is None
            assert e.value.__cause__ is None and (e.value.__context__ is None
                                                  or e.value.__suppress_context__), \
                f"chained to {e.value.__context__!r}"
            assert str(e.value) == "job 7: not every task finished in time; it keeps running"
    finally:
        c.close()
        m.close()
