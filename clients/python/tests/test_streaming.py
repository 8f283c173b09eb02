"""as_completed and wait when things go wrong: tasks finishing out of
order, a worker killed with SIGKILL, the master killed and restarted."""

import threading

from conftest import free_base_port, scaled

WAIT = scaled(120)


def test_as_completed_yields_tasks_as_they_finish_not_in_task_order(running, tmp_path):
    c = running.client()
    gate = tmp_path / "gate"
    n = 300
    # Task 0 runs until the test opens the gate, which it does only once
    # every other task has been yielded: so index 0 must come last, and the
    # others must stream while the job is still running.
    specs = [{"shell": f"while [ ! -e {gate} ]; do sleep 0.02; done"}]
    specs += [{"fn": "square", "args": i} for i in range(1, n)]
    job = c.submit(specs=specs)
    order = []
    for rec in job.as_completed(timeout=WAIT):
        order.append(rec["index"])
        assert rec["status"] == "done"
        if len(order) == n - 1:
            assert 0 not in order
            assert job.status()["running"] == 1
            gate.touch()
    assert order[-1] == 0
    assert sorted(order) == list(range(n))


def test_as_completed_reads_each_record_about_once_not_the_job_per_round(running):
    c = running.client()
    n = 3000
    job = c.submit(fn="sleep", args=0.002, array=range(n))
    reads = {"rows": 0, "rounds": 0}
    results, status = c._results, c._status

    def counting_results(*args, **kwargs):
        rep = results(*args, **kwargs)
        reads["rows"] += len(rep["tasks"])
        return rep

    def counting_status(*args, **kwargs):
        reads["rounds"] += 1
        return status(*args, **kwargs)

    c._results, c._status = counting_results, counting_status
    indexes = sorted(r["index"] for r in job.as_completed(timeout=WAIT))
    assert indexes == list(range(n))
    assert reads["rounds"] >= 5, reads        # it streamed over several rounds...
    assert reads["rows"] < 3 * n, reads       # ...without re-reading the job each time


def test_as_completed_misses_nothing_when_a_worker_is_killed(cluster):
    cluster.start_master("--heartbeat-ms", "200")
    w1 = cluster.start_worker("w1", 2)
    cluster.start_worker("w2", 2)
    c = cluster.client()
    n = 400
    job = c.submit(fn="sleep", args=0.02, array=range(n))
    seen = []
    for rec in job.as_completed(timeout=WAIT):
        seen.append(rec)
        if len(seen) == 50:
            w1.kill9()
    indexes = [r["index"] for r in seen]
    assert sorted(indexes) == list(range(n)), "every task exactly once"
    assert all(r["status"] == "done" for r in seen)
    # The kill mattered: some tasks ran again elsewhere after it.
    assert any(r["attempts"] >= 2 for r in seen)
    assert {r["worker"] for r in seen if r["attempts"] >= 2} == {"w2"}
    assert job.status()["done"] == n


def test_as_completed_streams_a_job_with_retries_without_repeats(running):
    c = running.client()
    specs = [{"fn": "fail", "retries": 1} if i % 10 == 0 else {"fn": "square", "args": i}
             for i in range(200)]
    job = c.submit(specs=specs)
    recs = list(job.as_completed(timeout=WAIT))
    assert sorted(r["index"] for r in recs) == list(range(200))
    failed = [r for r in recs if r["status"] == "failed"]
    assert len(failed) == 20 and all(r["attempts"] == 2 for r in failed)


class Restartable:
    """A master on a fixed port (a restart must come back where the client
    and the worker look) with short heartbeats and recovery grace, one
    worker, one client."""

    ARGS = ("--heartbeat-ms", "200", "--recovery-grace", "1")

    def __init__(self, cluster):
        self.cluster = cluster
        self.port = free_base_port()
        cluster.start_master(*self.ARGS, port=self.port)
        cluster.start_worker("w1", 2)
        self.client = cluster.client()

    def kill9_and_restart(self):
        self.cluster.master.kill9()
        self.cluster.start_master(*self.ARGS, port=self.port)


def test_wait_rides_out_a_master_restart(cluster, tmp_path):
    r = Restartable(cluster)
    c = r.client
    gate = tmp_path / "gate"
    job = c.submit(["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done"], array="0-3")
    seen_progress = threading.Event()
    progress = []
    outcome = {}

    def on_progress(rec):
        progress.append(rec)
        seen_progress.set()

    def waiter():
        try:
            outcome["record"] = job.wait(timeout=WAIT, progress=on_progress)
        except BaseException as e:  # handed to the test thread
            outcome["error"] = e

    t = threading.Thread(target=waiter)
    t.start()
    assert seen_progress.wait(WAIT)
    before = len(progress)
    r.kill9_and_restart()
    # The job cannot finish before the gate opens, so the wait spans the restart.
    cluster.workers[0].wait_line(r"event=reregistered")
    gate.touch()
    t.join(WAIT)
    assert not t.is_alive()
    assert "error" not in outcome, outcome.get("error")
    final = outcome["record"]
    assert final["state"] == "done" and final["done"] == 4
    assert all(r["state"] != "done" for r in progress[:before])
    assert isinstance(c.stats()["uptime"], (int, float))


def test_a_map_iterator_carries_on_after_a_master_restart(cluster):
    r = Restartable(cluster)
    it = r.client.map("square", range(2000), timeout=WAIT)
    first = [next(it) for _ in range(10)]
    r.kill9_and_restart()
    rest = list(it)
    assert first + rest == [n * n for n in range(2000)]
