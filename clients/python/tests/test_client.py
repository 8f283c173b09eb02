"""Every Client and Job method against a real master and worker."""

import concurrent.futures
import os
import threading

import pytest

import ztask
from conftest import scaled

WAIT = scaled(60)


def test_a_function_over_items_returns_every_square(running):
    c = running.client()
    job = c.submit(fn="square", items=range(10), name="squares")
    final = job.wait(timeout=WAIT)
    assert final["state"] == "done" and final["done"] == 10 and final["name"] == "squares"
    records = list(job.results())
    assert [r["index"] for r in records] == list(range(10))
    assert [r["result"] for r in records] == [n * n for n in range(10)]
    assert job.total == 10 and job.id == final["job"]


def test_an_array_command_gets_its_index_in_argv_and_environment(running):
    c = running.client()
    job = c.submit(["sh", "-c", 'echo "{} $ZTASK_TASK_INDEX"'], array="1-50")
    assert job.wait(timeout=WAIT)["done"] == 50
    out = {r["index"]: r["stdout"] for r in job.results()}
    assert out == {i: f"{i} {i}\n" for i in range(1, 51)}


def test_a_job_sent_in_several_batches_arrives_whole_and_closed(running):
    c = running.client()
    n = 30_001    # seven batches of at most 5,000
    job = c.submit(fn="noop", items=range(n), name="batched")
    st = job.status()
    assert (st["total"], st["closed"], job.total) == (n, True, n)
    assert job.wait(timeout=WAIT)["done"] == n
    assert [r["index"] for r in job.results()] == list(range(n))


def test_results_after_a_task_read_exactly_the_rest_in_order_across_pages(cluster):
    # No worker: every task stays queued, so the records do not change
    # between the reads. Another job first: task ids are global, not the
    # job's indexes.
    cluster.start_master()
    c = cluster.client()
    c.submit(fn="noop", items=range(3))
    n, k = 2 * ztask.client.PAGE + 500, 700
    job = c.submit(fn="noop", items=range(n))
    ids = [r["task"] for r in job.results()]
    assert len(ids) == n and ids == sorted(ids) and ids[0] > 3
    # The rest, from the k-th on: two pages and part of a third.
    rest = list(job.results(after=ids[k - 1]))
    assert [r["task"] for r in rest] == ids[k:]
    assert [r["index"] for r in rest] == list(range(k, n))
    # A limit cuts across a page boundary.
    some = [r["task"] for r in job.results(after=ids[k - 1], limit=ztask.client.PAGE + 3)]
    assert some == ids[k:k + ztask.client.PAGE + 3]
    assert list(job.results(after=ids[-1])) == []
    assert [r["task"] for r in job.results(after=0, limit=2)] == ids[:2]
    for bad in ({"after": -1}, {"after": "7"}, {"after": True}, {"limit": 0}):
        with pytest.raises(ztask.UsageError):
            job.results(**bad)


def test_results_after_with_failed_only_pages_over_the_failed_ones(cluster, monkeypatch):
    # failed_only with a cursor: the master filters, the cursor is a task
    # id of the filtered rows. Pages of 2 (PAGE is read at each request)
    # make every read cross pages. No worker: cancelled tasks are the
    # "failed" ones, and the rest stay queued.
    cluster.start_master()
    c = cluster.client()
    job = c.submit(fn="noop", items=range(12))
    for i in (2, 5, 6, 9, 11):
        assert job.cancel(i) == 1
    ids = [r["task"] for r in job.results()]
    monkeypatch.setattr(ztask.client, "PAGE", 2)
    failed = [(r["index"], r["status"]) for r in job.results(failed_only=True)]
    assert failed == [(i, "cancelled") for i in (2, 5, 6, 9, 11)]
    # After a failed task, and after a task that did not fail.
    assert [r["index"] for r in job.results(failed_only=True, after=ids[5])] == [6, 9, 11]
    assert [r["index"] for r in job.results(failed_only=True, after=ids[3])] == [5, 6, 9, 11]
    assert [r["index"] for r in job.results(failed_only=True, after=ids[2], limit=3)] == [5, 6, 9]
    assert list(job.results(failed_only=True, after=ids[11])) == []
    assert [r["index"] for r in job.results(after=ids[8], limit=3)] == [9, 10, 11]


def test_an_array_can_be_a_range_with_steps(running):
    c = running.client()
    job = c.submit(fn="square", array=range(0, 10, 3))
    job.wait(timeout=WAIT)
    assert [(r["index"], r["result"]) for r in job.results()] == [(0, 0), (3, 9), (6, 36),
                                                                   (9, 81)]
    job = c.submit(fn="square", array="2,5-7:2")
    job.wait(timeout=WAIT)
    assert [r["result"] for r in job.results()] == [4, 25, 49]


def test_a_shell_line_runs_with_sh(running):
    c = running.client()
    job = c.submit("echo $((6 * 7)) | tr 4 X", shell=True)
    job.wait(timeout=WAIT)
    (rec,) = job.results()
    assert rec["status"] == "done" and rec["stdout"] == "X2\n" and rec["exit_code"] == 0


def test_items_are_appended_to_a_command_without_placeholder(running):
    c = running.client()
    job = c.submit(["echo", "item"], items=["a b", "c"])
    job.wait(timeout=WAIT)
    assert [r["stdout"] for r in job.results()] == ["item a b\n", "item c\n"]
    job = c.submit("echo line", shell=True, items=[1, 2])
    job.wait(timeout=WAIT)
    assert [r["stdout"] for r in job.results()] == ["line 1\n", "line 2\n"]


def test_a_placeholder_in_fn_args_becomes_the_item_itself(running):
    c = running.client()
    job = c.submit(fn="echo", args={"n": "{}", "label": "item {}", "keep": [1, "{}"]},
                   items=[5, "x"])
    job.wait(timeout=WAIT)
    assert [r["result"] for r in job.results()] == [
        {"n": 5, "label": "item 5", "keep": [1, 5]},
        {"n": "x", "label": "item x", "keep": [1, "x"]}]


def test_raw_specs_run_with_the_options_applied(running):
    c = running.client()
    job = c.submit(specs=[{"fn": "square", "args": 3}, {"argv": ["true"], "index": 9}],
                   retries=1)
    job.wait(timeout=WAIT)
    recs = list(job.results())
    assert [r["status"] for r in recs] == ["done", "done"]
    assert recs[0]["result"] == 9 and recs[1]["index"] == 9


def test_task_options_reach_the_worker(running, tmp_path):
    c = running.client()
    job = c.submit(["sh", "-c", 'cat; echo "$GREETING"; pwd'], env={"GREETING": "hi"},
                   cwd=str(tmp_path), stdin="from stdin\n", priority=5, task_name="opt",
                   output_cap=1024)
    job.wait(timeout=WAIT)
    (rec,) = job.results()
    assert rec["stdout"] == f"from stdin\nhi\n{tmp_path}\n"
    assert rec["name"] == "opt"
    capped = c.submit(["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x"], output_cap=100)
    capped.wait(timeout=WAIT)
    (rec,) = capped.results()
    assert rec["stdout"] == "x" * 100 and rec["stdout_truncated"] is True


def test_timeout_and_retries_end_a_task_as_the_cli_does(running):
    c = running.client()
    slow = c.submit(fn="sleep", args=30, timeout=0.2)
    retried = c.submit(fn="fail", args={"message": "no luck"}, retries=2)
    assert slow.wait(timeout=WAIT)["state"] == "failed"
    assert retried.wait(timeout=WAIT)["failed"] == 1
    (rec,) = slow.results()
    assert rec["timed_out"] is True and rec["status"] == "failed"
    (rec,) = retried.results(failed_only=True)
    assert rec["attempts"] == 3 and rec["error"] == "no luck"


def test_require_sends_tasks_only_to_a_labelled_worker(running):
    running.start_worker("gpu1", 1, "--label", "gpu")
    c = running.client()
    job = c.submit(fn="noop", array="0-19", require="gpu")
    job.wait(timeout=WAIT)
    assert {r["worker"] for r in job.results()} == {"gpu1"}


def test_status_jobs_workers_and_stats_describe_the_cluster(running):
    c = running.client()
    job = c.submit(fn="noop", array="1-5", name="counted")
    job.wait(timeout=WAIT)
    st = job.status()
    assert (st["total"], st["done"], st["closed"], st["state"]) == (5, 5, True, "done")
    assert any(j["job"] == job.id and j["name"] == "counted" for j in c.jobs())
    (w,) = c.workers()
    assert w["worker"] == "w1" and w["alive"] and w["threads"] == 4 and w["done"] >= 5
    stats = c.stats()
    assert stats["workers_alive"] == 1 and stats["tasks_done"] >= 5 and stats["jobs"] >= 1


def test_cancel_stops_a_job_and_forget_deletes_it(running, tmp_path):
    c = running.client()
    gate = tmp_path / "never"
    job = c.submit(["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done"], array="0-9")
    assert job.cancel(index=9) == 1
    assert job.cancel() == 9
    final = job.wait(timeout=WAIT)
    assert final["state"] == "cancelled" and final["cancelled"] == 10
    assert {r["status"] for r in job.as_completed(timeout=WAIT)} == {"cancelled"}
    assert job.forget() == 1
    with pytest.raises(ztask.RefusedError) as e:
        job.status()
    assert e.value.code == "not_found"


def test_drain_lets_a_worker_leave_cleanly(running):
    w2 = running.start_worker("w2", 1)
    c = running.client()
    assert c.drain("w2") is None
    assert w2.p.wait(scaled(30)) == 0
    assert not any(w["worker"] == "w2" and w["alive"] for w in c.workers())


def test_logs_reads_a_finished_tasks_output(running):
    c = running.client()
    job = c.submit(["sh", "-c", "echo out; echo err >&2; echo more"])
    job.wait(timeout=WAIT)
    (rec,) = job.results()
    chunks = list(c.logs(rec["task"]))
    assert "".join(ch.data for ch in chunks if ch.stream == "stdout") == "out\nmore\n"
    assert "".join(ch.data for ch in chunks if ch.stream == "stderr") == "err\n"
    assert list(c.logs(f"{job.id}.0")) == chunks == list(c.logs((job.id, 0)))


def test_logs_follow_yields_output_while_the_task_runs(running, tmp_path):
    c = running.client()
    gate = tmp_path / "go"
    job = c.submit(["sh", "-c", f"echo first; while [ ! -e {gate} ]; do sleep 0.02; done; "
                                "echo second"])
    chunks = c.logs((job.id, 0), follow=True)
    first = next(chunks)
    assert first == ztask.LogChunk("stdout", "first\n")
    assert job.status()["running"] == 1     # seen before the task ended
    gate.touch()
    assert "".join(ch.data for ch in chunks) == "second\n"
    assert job.status()["state"] == "done"


def test_map_returns_results_in_order(running):
    c = running.client()
    assert list(c.map("square", [3, 1, 2])) == [9, 1, 4]
    assert list(c.map("square", [])) == []


def test_map_of_100k_items_returns_every_result_in_order(running):
    c = running.client()
    n = 100_000
    got = c.map("square", range(n), timeout=scaled(300))
    mismatches = sum(1 for i, r in enumerate(got) if r != i * i)
    assert mismatches == 0
    jobs = c.jobs()
    assert jobs[-1]["total"] == n and jobs[-1]["done"] == n


def test_map_raises_task_failed_at_the_failed_item(running):
    c = running.client()
    it = c.map("square", [2, "x", 4])
    assert next(it) == 4
    with pytest.raises(ztask.TaskFailed) as e:
        next(it)
    assert e.value.exit_code == 1
    assert e.value.record["index"] == 1 and "must be a number" in e.value.record["error"]


def test_submit_fn_gives_futures_of_one_open_job(running):
    c = running.client()
    futures = [c.submit_fn("square", n) for n in range(20)]
    assert [f.result(timeout=WAIT) for f in futures] == [n * n for n in range(20)]
    job_id = c._executor.job.id
    assert c.job(job_id).status()["state"] == "open"
    assert c.submit_fn("echo", 1, "two").result(timeout=WAIT) == [1, "two"]
    assert c.submit_fn("echo", a=1).result(timeout=WAIT) == {"a": 1}
    c.close()
    st = running.client().job(job_id).status()
    assert st["closed"] and st["total"] == 22 and st["state"] == "done"


def test_an_executor_works_with_concurrent_futures(running):
    c = running.client()
    with c.executor(name="pool", retries=0) as ex:
        futures = {ex.submit("square", n): n for n in range(30)}
        bad = ex.submit("fail", message="boom")
        done = {futures[f]: f.result() for f in concurrent.futures.as_completed(futures,
                                                                                 timeout=WAIT)}
        assert done == {n: n * n for n in range(30)}
        with pytest.raises(ztask.TaskFailed, match="boom"):
            bad.result(timeout=WAIT)
        assert list(ex.map("square", range(5))) == [0, 1, 4, 9, 16]
        job = ex.job
    st = job.status()
    assert st["name"] == "pool" and st["closed"] and st["total"] == 31
    with pytest.raises(RuntimeError):
        ex.submit("noop")


def test_an_executor_is_safe_to_share_between_threads(running):
    c = running.client()
    with c.executor() as ex:
        results = {}

        def work(k):
            results[k] = [ex.submit("square", k * 100 + i) for i in range(25)]

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k, futs in results.items():
            assert [f.result(timeout=WAIT) for f in futs] == [(k * 100 + i) ** 2
                                                              for i in range(25)]
    assert ex.job.status()["total"] == 100


def test_the_client_works_from_an_installed_copy_of_the_example(running):
    # examples/python/distributed_square.py, the notes' program, end to end.
    import subprocess
    import sys
    from conftest import REPO
    env = dict(os.environ, ZTASK_MASTER=running.api,
               PYTHONPATH=os.path.join(REPO, "clients", "python"))
    p = subprocess.run([sys.executable, os.path.join(REPO, "examples", "python",
                                                     "distributed_square.py"), "--n", "20"],
                       capture_output=True, text=True, timeout=scaled(120), env=env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    squares = sorted(tuple(map(int, line.split()[-3::2])) for line in lines
                     if line.startswith("square"))
    shells = sorted(tuple(map(int, line.split()[-3::2])) for line in lines
                    if line.startswith("shell"))
    assert squares == shells == [(n, n * n) for n in range(20)]


def test_jobs_run_after_the_jobs_they_depend_on_and_dep_failed_passes_down(running):
    c = running.client()
    prepare = c.submit(fn="square", args=3)
    render = c.submit(fn="square", array="0-3", after=prepare)
    merge = c.submit(fn="noop", after=[render.id])
    each = c.submit(fn="square", array="0-3", after_each=render)
    assert merge.wait(timeout=WAIT)["state"] == "done"
    assert each.wait(timeout=WAIT)["done"] == 4
    first_render = min(r["started"] for r in render.results())
    assert prepare.status()["finished"] <= first_render
    assert render.status()["finished"] <= min(r["started"] for r in merge.results())

    failed = c.submit(fn="fail")
    after = c.submit(fn="noop", array="0-1", after=failed)
    then = c.submit(fn="noop", after=after)
    anyway = c.submit(fn="noop", after_any=failed)
    rec = then.wait(timeout=WAIT)
    assert (rec["state"], rec["dep_failed"]) == ("dep_failed", 1)
    assert after.wait(timeout=WAIT)["dep_failed"] == 2
    assert {r["status"] for r in after.results()} == {"dep_failed"}
    assert f"job {failed.id}" in next(iter(after.results()))["error"]
    assert anyway.wait(timeout=WAIT)["state"] == "done"


def test_a_dependency_on_a_job_that_does_not_exist_is_refused(running):
    c = running.client()
    with pytest.raises(ztask.RefusedError) as e:
        c.submit(fn="noop", after=999999)
    assert "no job 999999" in str(e.value)
    with pytest.raises(ztask.UsageError):
        c.submit(fn="noop", after_any=["3"])


def test_cancel_with_dependants_cancels_the_jobs_that_wait(running):
    c = running.client()
    parent = c.submit(fn="sleep", args={"seconds": 30})
    child = c.submit(fn="noop", after=parent)
    grandchild = c.submit(fn="noop", after=child)
    parent.cancel(with_dependants=True)
    assert grandchild.wait(timeout=WAIT)["state"] == "cancelled"
    assert child.wait(timeout=WAIT)["cancelled"] == 1


def test_tasks_asking_resources_run_where_they_fit_and_learn_what_they_got(cluster):
    cluster.start_master()
    cluster.start_worker("big", 4, "--resources", "cpus=4,licence=1")
    c = cluster.client()
    job = c.submit(["sh", "-c", 'echo "$ZTASK_CPUS"'], array="0-3", cpus=2,
                   resources={"licence": 1})
    assert job.wait(timeout=WAIT)["done"] == 4
    assert {r["stdout"] for r in job.results()} == {"2\n"}
    (worker,) = c.workers()
    assert worker["resources"]["licence"] == 1 and worker["used"]["cpus"] == 0
    # What no worker could ever hold waits, and is said so in stats.
    c.submit(fn="noop", gpus=0.5)
    assert any("gpus=0.5" in need for need in c.stats()["unrunnable"])


def test_retry_runs_failed_tasks_again_in_the_same_job(running, tmp_path):
    c = running.client()
    flag = tmp_path / "flag"
    job = c.submit(["sh", "-c", f"[ -e {flag} ] || exit 3"], array="0-2")
    assert job.wait(timeout=WAIT)["failed"] == 3
    flag.write_text("")
    assert job.retry(indexes=[0, 2]) == 2
    final = job.wait(timeout=WAIT)
    assert (final["done"], final["failed"]) == (2, 1)
    assert job.retry(cancelled=False) == 1
    final = job.wait(timeout=WAIT)
    assert final["state"] == "done" and final["total"] == 3
    assert [r["attempts"] for r in job.results()] == [2, 2, 2]
    assert job.retry() == 0
    with pytest.raises(ztask.UsageError):
        job.retry(failed=False, cancelled=False)


def test_hold_release_priority_limit_and_show_steer_a_queued_job(cluster):
    cluster.start_master()
    c = cluster.client()
    a = c.submit(fn="noop", array="0-3", name="later")
    b = c.submit(fn="noop", array="0-1", max_running=1)
    assert a.hold() == 4 and a.status()["held"]
    assert a.hold(index=0) == 0            # held with its job already
    assert b.set_priority(7) == 2
    b.set_max_running(2)
    shown = b.show()
    assert shown["max_running"] == 2 and shown["definition"]["client"] == "python"
    assert shown["first_spec"] == {"fn": "noop", "index": 0}
    cluster.start_worker("w1", 2)
    assert b.wait(timeout=WAIT)["done"] == 2
    st = a.status()
    assert st["queued"] == 4 and st["held"]
    assert a.release() == 4
    assert a.wait(timeout=WAIT)["done"] == 4


def test_output_files_get_the_whole_stream_and_capture_false_keeps_none(running, tmp_path):
    c = running.client()
    job = c.submit(["sh", "-c", "echo out {}; echo err {} >&2"], array="1-2", cwd=str(tmp_path),
                   stdout_file="o/%{job}/%{index}.out", stderr_file="o/%{job}/%{index}.out",
                   capture=False)
    assert job.wait(timeout=WAIT)["done"] == 2
    for i in (1, 2):
        text = (tmp_path / "o" / str(job.id) / f"{i}.out").read_text()
        assert sorted(text.splitlines()) == [f"err {i}", f"out {i}"]
    assert [r["stdout"] for r in job.results()] == ["", ""]
    with pytest.raises(ztask.RefusedError):
        c.submit(["true"], stdout_file="x-%{nope}")
