"""Submits carry idempotency keys: a copy of a request the master already
took is answered as the first and adds nothing, so a submit whose reply was
lost is resent safely (docs/protocol.md, "Idempotent submits")."""

import os
import threading

import ztask
from conftest import free_base_port, scaled


def test_a_resent_batch_is_answered_as_the_first_and_adds_nothing(running):
    c = running.client()
    sent = []
    call = c._conn.call

    def recording(type_, members=None, **kw):   # keeps each submit as it went out
        if type_ == "submit":
            sent.append(kw.get("body"))
        return call(type_, members, **kw)

    c._conn.call = recording
    job = c.submit(fn="noop", items=range(12_000))   # three batches, three keys
    c._conn.call = call
    assert len(sent) == 3 and all(b"\"key\":" in b for b in sent)
    keys = {b.split(b'"key":"')[1].split(b'"')[0] for b in sent}
    assert len(keys) == 3
    for body in sent:   # every batch again, the closing one included
        rep = c._conn.call("submit", body=body)
        assert rep["job"] == job.id
    assert [j["job"] for j in c.jobs()] == [job.id]
    assert job.status()["total"] == 12_000


def test_a_submit_whose_reply_was_lost_makes_one_job(cluster):
    port = free_base_port()
    m = cluster.start_master(port=port,
                             env={**os.environ, "ZTASK_TEST_KILL_BEFORE_ACK": "1"})
    c = cluster.client(timeout=scaled(6))
    out = {}

    def submit():
        out["job"] = c.submit(fn="square", items=range(10))

    t = threading.Thread(target=submit)
    t.start()
    m.wait_line(r"event=test_kill_before_ack")
    m.p.wait(scaled(10))
    m.killed = True
    cluster.start_master(port=port)
    t.join(scaled(30))
    assert not t.is_alive() and out["job"].id == 1
    assert cluster.master.count(r"event=submit_repeated") == 1
    jobs = c.jobs()
    assert [(j["job"], j["total"]) for j in jobs] == [(1, 10)]
    cluster.start_worker("w1", 2)
    assert out["job"].wait(timeout=scaled(60))["done"] == 10
