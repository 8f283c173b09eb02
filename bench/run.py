#!/usr/bin/env python3
"""ztask benchmark: `make bench` runs this.

    python3 bench/run.py [--build build/release] [--out FILE.md]

Starts a fresh master (port 0, 127.0.0.1) and workers for every run of
every scenario, drives it with bench programs built under BUILD/bench/
(zt-load speaks the protocol directly), and prints one table: tasks/s
(median of the runs, with their spread), p50/p99 latency where it is
measured, the master's peak RSS, and CPU seconds of master / workers /
client over the measured window (from /proc/PID/stat), also as
microseconds per task. The first row is the no-state ceiling
(bench/ceiling.c: ZeroMQ PUSH/PULL + cJSON), and every fn noop row says
what share of it ztask reaches in the same run.

Environment:
  BENCH_SCALE     multiply every N (default 1; 0.1 for a quick look)
  BENCH_RUNS      runs per scenario, the median is reported (default 3)
  BENCH_PREFETCH  master --prefetch values to try (default "0 64 auto"; the
                  scenarios that take one value, and bench/peers.py, use the
                  last: the default configuration)
  BENCH_THREADS   threads per worker in the fn noop scenarios (default 4)
  BENCH_ONLY      a regular expression: run only scenarios whose name matches
  BENCH_KEEP      1: keep the run directory (databases, logs)
  BENCH_PYTHON    the interpreter of the Python client rows (default
                  /usr/bin/python3, Debian's, with python3-zmq)
  BENCH_MIXED_SECONDS  how long each task of the mixed-requests scenario
                  sleeps (default 0.1)
  BENCH_BASE      a build directory of another version (its bin/): the exec
                  rows (`true` and `exit0`) also run on its daemons, interleaved with ours
                  round by round (an A/B in one run), and the fn noop A/B rows
                  (2 workers, default prefetch) alternate it with this build
                  run by run; BENCH_BASE_NAME labels its rows (default: the
                  directory)

Durable scenarios put their database in BUILD/bench/run/ (on the disk the
build lives on: its filesystem type is printed, since fsync cost depends
on it). Numbers are only comparable within one run of this script:
quote ratios against baselines measured in the same run.
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import (BenchError, Cluster, Row, env_float, env_int, format_table,  # noqa: E402
                      fs_type, fsync_ms, install_signal_exit, last_json, machine_header,
                      machine_info, prepare_workdir, run_client, say, scaled, snapshot_build)


class HttpObserver:
    """What a Prometheus scraping every second and an open dashboard ask
    of a master: every second, /metrics and the dashboard's polls
    (overview, jobs, workers, a page of job 1's tasks), on a thread."""

    PATHS = ("/metrics", "/api/overview", "/api/jobs?limit=50", "/api/workers",
             "/api/tasks?job=1&limit=50")

    def __init__(self, url):
        import threading
        self.url = url.rstrip("/")
        self.requests = 0
        self.errors = 0
        self.last_error = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.done.set()
        if self.thread.is_alive():
            self.thread.join(10)

    def _run(self):
        import urllib.error
        import urllib.request
        while not self.done.is_set():
            t0 = time.monotonic()
            for path in self.PATHS:
                try:
                    with urllib.request.urlopen(self.url + path, timeout=10) as r:
                        r.read()
                    self.requests += 1
                except urllib.error.HTTPError as e:
                    if e.code != 404:   # job 1 before the first submit
                        self.errors += 1
                        self.last_error = f"{path}: {e}"
                except OSError as e:
                    self.errors += 1
                    self.last_error = f"{path}: {e}"
            self.done.wait(max(0.0, 1.0 - (time.monotonic() - t0)))


class Bench:
    """build: where the programs are (BUILD/bin, BUILD/bench): a snapshot
    made by snapshot_build, so a rebuild during the run changes nothing."""

    def __init__(self, build, workdir, base_bin=None, base_name=None):
        self.bin = os.path.join(build, "bin")
        self.bench_bin = os.path.join(build, "bench")
        self.workdir = workdir
        self.scale = env_float("BENCH_SCALE", 1.0)
        self.runs = max(1, env_int("BENCH_RUNS", 3))
        # "auto" is the master's default: prefetch earned by short tasks.
        self.prefetch = [x if x == "auto" else int(x)
                         for x in os.environ.get("BENCH_PREFETCH", "0 64 auto").split()]
        self.threads = env_int("BENCH_THREADS", 4)
        # Debian's interpreter, which has python3-zmq (pyenv's may not).
        self.python = os.environ.get("BENCH_PYTHON", "/usr/bin/python3")
        only = os.environ.get("BENCH_ONLY", "")
        self.only = re.compile(only) if only else None
        self.rows = []
        # BENCH_BASE=DIR (a build directory, DIR/bin): the exec rows and the
        # fn noop A/B rows run on its daemons too, in the same rounds (an A/B
        # in one run).
        self.base_bin = base_bin
        self.base_name = base_name

    def wanted(self, name):
        return self.only is None or self.only.search(name) is not None

    def tool(self, name):
        return os.path.join(self.bench_bin, name)

    def timeout_for(self, n, min_rate=500):
        """A client's time limit: generous (min_rate tasks/s), but finite."""
        return max(60, int(n / min_rate))

    def scenario(self, name, n, fn, unit="tasks/s"):
        """Runs fn(row) self.runs times (fn appends to row.rates/row.runs)."""
        if not self.wanted(name):
            return None
        row = Row(name, n, unit)
        self.rows.append(row)
        say(f"== {name} (N={n:,}, {self.runs} runs)")
        for i in range(self.runs):
            try:
                fn(row)
            except (BenchError, OSError, ValueError, KeyError) as e:
                # One scenario failing (a crash, a refused start) must not
                # lose the rest of the table.
                row.error = f"{type(e).__name__}: {e}"[:300]
                say(f"   run {i + 1}: FAILED: {row.error}")
                break
            say(f"   run {i + 1}: {row.rates[-1]:,.0f} {unit}  {row.runs[-1].get('say', '')}")
        return row

    # ---- one measured run on a fresh cluster ----

    def throughput_run(self, row, n, workers, threads, prefetch, db="bench.db", sync="full",
                       exec_=False, bin_dir=None, master_args=(), observe=False, cmd=None):
        cl = Cluster(bin_dir or self.bin, self.workdir, db=db, sync=sync, prefetch=prefetch,
                     workers=workers, threads=threads, master_args=master_args)
        observer = None
        try:
            cl.start()
            if observe:
                url = cl.master.wait_line(r"event=http_listening url=(\S+)", 10).group(1)
                observer = HttpObserver(url)
                observer.start()
            cpu0 = cl.cpu()
            argv = [self.tool("zt-load"), "--master", cl.api, "throughput", "--n", str(n),
                    "--timeout", str(self.timeout_for(n))]
            if exec_:
                argv.append("--exec")
                if cmd:
                    argv += ["--cmd", cmd]
            out, wall, ccpu = run_client(argv, self.timeout_for(n) + 30,
                                         os.path.join(self.workdir, "client.log"))
            cpu1 = cl.cpu()
            res = last_json(out)
            run = {"rate": res["tasks_per_s"], "submit_s": res["submit_s"],
                   "rss_kb": cl.master_peak_kb(),
                   "cpu": {"master": cpu1["master"] - cpu0["master"],
                           "workers": cpu1["workers"] - cpu0["workers"],
                           "workers_own": cpu1["workers_own"] - cpu0["workers_own"],
                           "client": ccpu}}
            if observer:
                observer.stop()
                if observer.errors:
                    raise BenchError(f"HTTP observer: {observer.errors} failed requests: "
                                     f"{observer.last_error}")
                run["say"] = f"{observer.requests} HTTP requests answered"
            if workers > 8:
                wout, _ = cl.cli("workers", "--json")
                run["done"] = [json.loads(l)["done"] for l in wout.splitlines() if l.strip()]
        finally:
            if observer:
                observer.stop()
            cl.stop()
        row.rates.append(run["rate"])
        row.runs.append(run)
        return run

    # ---- scenarios ----

    def ceiling(self):
        """The no-state ceiling (bench/ceiling.c, 2 workers): cheap, so every
        `make bench` has it and the fn noop rows can say how far they are."""
        n = scaled(200000, self.scale, 1000)

        def one(row):
            out, wall, cpu = run_client([self.tool("ceiling"), "--n", str(n), "--workers", "2",
                                         "--timeout", "300"], 330)
            rate = last_json(out)["tasks_per_s"]
            row.rates.append(rate)
            row.runs.append({"rate": rate, "cpu": {"client": cpu}})

        self.ceiling_row = self.scenario("ceiling: ZeroMQ PUSH/PULL + cJSON, 2 workers, no state",
                                         n, one)

    def ceiling_notes(self):
        c = self.ceiling_row.rate() if self.ceiling_row and not self.ceiling_row.error else None
        if not c:
            return
        for row in self.rows:
            if row.name.startswith("fn noop") and row.rate() and not row.error:
                share = f"{row.rate() / c * 100:.0f}% of the ceiling"
                row.note = f"{share}; {row.note}" if row.note else share

    def noop_workers(self):
        n = scaled(200000, self.scale, 1000)
        for pf in self.prefetch:
            for w in (1, 2, 4):
                self.scenario(f"fn noop, {w} worker{'s' if w > 1 else ''}, sync full, prefetch {pf}",
                              n, lambda row, w=w, pf=pf: self.throughput_run(
                                  row, n, w, self.threads, pf))

    def http_overhead(self):
        """What --http costs: fn noop (2 workers, sync full) with /metrics
        scraped every second and the dashboard open (its JSON polled every
        second, as the page does) against the same without --http. A/B in
        one run, the runs interleaved (A, B, A, B, ...) so both see the
        same machine; the B row's note gives the ratio of the medians."""
        n = scaled(200000, self.scale, 1000)
        pf = self.prefetch[-1]
        name_a = f"fn noop, 2 workers, sync full, prefetch {pf}, no --http (A)"
        name_b = f"fn noop, 2 workers, sync full, prefetch {pf}, --http scraped 1/s + dashboard (B)"
        if not (self.wanted(name_a) or self.wanted(name_b)):
            return
        a, b = Row(name_a, n), Row(name_b, n)
        self.rows += [a, b]
        say(f"== {name_a} / {name_b} (N={n:,}, {self.runs} runs each, interleaved)")
        for i in range(self.runs):
            for row, args, observe in ((a, (), False), (b, ("--http", "127.0.0.1:0"), True)):
                if row.error:
                    continue
                try:
                    self.throughput_run(row, n, 2, self.threads, pf, master_args=args,
                                        observe=observe)
                except (BenchError, OSError, ValueError, KeyError) as e:
                    row.error = f"{type(e).__name__}: {e}"[:300]
                    say(f"   {row.name[-3:]} run {i + 1}: FAILED: {row.error}")
                    continue
                say(f"   {row.name[-3:]} run {i + 1}: {row.rates[-1]:,.0f} tasks/s  "
                    f"{row.runs[-1].get('say', '')}")
        if a.rate() and b.rate():
            b.note = f"B/A = {b.rate() / a.rate():.3f}"

    def sync_modes(self):
        n = scaled(200000, self.scale, 1000)
        pf = self.prefetch[-1]
        for label, db, sync in (("sync acked (the default)", "bench.db", "acked"),
                                ("sync interval", "bench.db", "interval"),
                                ("sync off", "bench.db", "off"),
                                ("--db :memory:", ":memory:", "off")):
            self.scenario(f"fn noop, 2 workers, {label}, prefetch {pf}", n,
                          lambda row, db=db, sync=sync: self.throughput_run(
                              row, n, 2, self.threads, pf, db=db, sync=sync))

    def exec_true(self):
        """The exec rows, twice: with `true`, and with bench/exit0 (a static
        program that only exits, whose fork + exec costs the kernel about a
        quarter of `true`'s here: the regime of a host where fork is cheap,
        docs/performance.md). Skipped for exit0 where it was not built."""
        self.exec_rows("`true`", "true")
        exit0 = self.tool("exit0")
        if os.path.exists(exit0):
            self.exec_rows("`exit0`", exit0)

    def exec_rows(self, label, cmd):
        """ztask exec CMD against posix_spawn with 2 in flight, with the
        output on /dev/null (the raw cost of a command) and captured
        through pipes (what subprocess.run(capture_output=True) pays, and
        ztask captures too); runs are interleaved (baselines, ztask,
        baselines, ...) so all see the same machine. ztask gets one worker
        with 2 threads: 2 in flight too. Besides tasks/s, each ztask row
        gives the CPU ratio: the spawn loop's CPU per command over ztask's
        (master + worker + its commands), which a busy machine moves less
        than it moves tasks/s (a loaded host gives ztask's seven threads a
        larger share than the loop's two)."""
        n = scaled(5000, self.scale, 200)
        pairs = []
        base = Row(f"posix_spawn loop {label}, 2 threads x 1 in flight (baseline)", n)
        cap = Row(f"posix_spawn loop {label}, output captured through pipes (baseline)", n)
        for pf in self.prefetch:
            name = f"exec {label}, 1 worker x 2 threads, prefetch {pf}, default --sync"
            if self.wanted(name):
                pairs.append((pf, Row(name, n), None))
                # The A/B: the same scenario on the base build's daemons,
                # interleaved with ours in every round.
                if self.base_bin:
                    pairs.append((pf, Row(f"{name} (base: {self.base_name})", n), self.base_bin))
        if not pairs:
            return
        self.rows.append(base)
        self.rows.append(cap)
        for _, r, _ in pairs:
            self.rows.append(r)
        say(f"== exec {label} vs posix_spawn (N={n:,}, {self.runs} runs)")
        for i in range(self.runs):
            try:
                for row, extra in ((base, []), (cap, ["--capture"])):
                    out, wall, cpu = run_client([self.tool("spawn-loop"), "--n", str(n),
                                                 "--inflight", "2"] + extra + ["--", cmd], 300)
                    res = last_json(out)
                    row.rates.append(res["tasks_per_s"])
                    row.runs.append({"cpu": {"client": cpu, "own": res.get("own_cpu_s")}})
                    say(f"   run {i + 1}: spawn loop{' (captured)' if extra else ''} "
                        f"{res['tasks_per_s']:,.0f}/s")
                # The A/B's builds take turns at going first, so that
                # neither is always the one right after the spawn loops.
                order = pairs if i % 2 == 0 or not self.base_bin else list(reversed(pairs))
                for pf, r, bin_dir in order:
                    if r.error:
                        continue
                    try:
                        # Each build's default --sync (acked since
                        # session 6, full before): what its users get.
                        run = self.throughput_run(r, n, 1, 2, pf, exec_=True, bin_dir=bin_dir,
                                                  sync=None, cmd=cmd)
                        say(f"   run {i + 1}: ztask{' (base)' if bin_dir else ''} prefetch {pf}: "
                            f"{run['rate']:,.0f}/s")
                    except (BenchError, OSError, ValueError, KeyError) as e:
                        r.error = f"{type(e).__name__}: {e}"[:300]
            except (BenchError, OSError, ValueError, KeyError) as e:
                base.error = f"{type(e).__name__}: {e}"[:300]
                break
        b, c = base.rate(), cap.rate()
        loop_cpu = statistics.median(r["cpu"]["client"] for r in base.runs) if base.runs else 0
        owns = [r["cpu"]["own"] for r in base.runs if r["cpu"].get("own") is not None]
        loop_own = statistics.median(owns) if owns else None
        for _, r, _ in pairs:
            if not (b and c and r.rate()):
                continue
            note = (f"{r.rate() / b:.2f}x the spawn loop (target >= 0.90), "
                    f"{r.rate() / c:.2f}x the capturing loop")
            zt_cpu = statistics.median(x["cpu"]["master"] + x["cpu"]["workers"] for x in r.runs)
            if zt_cpu > 0 and loop_cpu > 0:
                note += f"; CPU ratio {loop_cpu / zt_cpu:.2f}"
            # What each adds to its commands, per command: the loop's own
            # threads against ztask's master and worker threads.
            if loop_own is not None:
                zt_own = statistics.median(x["cpu"]["master"] + x["cpu"]["workers_own"]
                                           for x in r.runs)
                note += f"; own CPU per command: loop {loop_own * 1e6 / n:.0f} us, ztask {zt_own * 1e6 / n:.0f} us"
            r.note = note

    def submit_1m(self):
        n = scaled(1000000, self.scale, 10000)
        name = f"submit {n:,} fn noop tasks (CLI), no workers, sync full"

        def one(row):
            cl = Cluster(self.bin, self.workdir, db="bench.db", sync="full", workers=0)
            try:
                cl.start()
                rss0 = cl.master_rss_kb()
                cpu0 = cl.cpu()
                out, wall = cl.cli("submit", "--fn", "noop", "--array", f"1-{n}", "--json",
                                   timeout=self.timeout_for(n, 2000))
                rss1 = cl.master_rss_kb()
                cpu1 = cl.cpu()
                job = json.loads(out.strip().splitlines()[-1])
                if job.get("tasks") != n:
                    raise BenchError(f"submitted {job}")
                run = {"rate": n / wall, "submit_s": wall, "rss_kb": cl.master_peak_kb(),
                       "bytes_per_task": (rss1 - rss0) * 1024 / n,
                       "cpu": {"master": cpu1["master"] - cpu0["master"]},
                       "say": f"submit {wall:.2f}s, RSS +{(rss1 - rss0) / 1024:.0f} MiB"}
            finally:
                cl.stop()
            row.rates.append(run["rate"])
            row.runs.append(run)

        row = self.scenario(name, n, one, unit="submitted/s")
        if row and row.runs and not row.error:
            r = row.median_run()
            row.note = (f"accepted in {r['submit_s']:.2f}s (target < 10 s for 1M); "
                        f"{r['bytes_per_task']:.0f} B/task queued "
                        f"(target: 1M under 512 MiB, i.e. < 537 B/task)")

    def many_workers(self):
        n = scaled(200000, self.scale, 2000)
        for pf in self.prefetch:
            def one(row, pf=pf):
                run = self.throughput_run(row, n, 64, 1, pf)
                done = run["done"]
                mean = statistics.mean(done)
                dev = max(abs(d - mean) for d in done) / mean * 100 if mean else 0
                run["fair_dev"] = dev
                run["say"] = f"per-worker done {min(done)}..{max(done)}, max deviation {dev:.0f}%"

            row = self.scenario(f"fn noop, 64 workers x 1 thread, sync full, prefetch {pf}",
                                n, one)
            if row and row.runs and not row.error:
                devs = [r["fair_dev"] for r in row.runs]
                worst = max(devs)
                row.note = (f"fairness: per-worker done within {worst:.0f}% of the mean "
                            f"(worst run; target 20%: {'ok' if worst <= 20 else 'NOT MET'})")

    def relay_rtt(self, samples):
        """One run of the latency floor (bench/ceiling.c --rtt): client ->
        relay -> worker -> relay -> client over ZeroMQ + cJSON, no state."""
        out, wall, cpu = run_client([self.tool("ceiling"), "--rtt", str(samples), "--timeout", "120"],
                                    150)
        return last_json(out), cpu

    def latency(self):
        samples = scaled(1000, self.scale, 100)

        def floor(row):
            res, cpu = self.relay_rtt(samples)
            row.rates.append(1000.0 / res["mean_ms"])
            row.runs.append({"rate": 1000.0 / res["mean_ms"], "p50": res["p50_ms"],
                             "p99": res["p99_ms"], "cpu": {"client": cpu},
                             "say": f"p50 {res['p50_ms']:.3f} ms, p99 {res['p99_ms']:.3f} ms"})

        row = self.scenario("ceiling: one task's round trip through a ZeroMQ + cJSON relay, no state",
                            samples, floor, unit="round trips/s")
        if row and row.runs and not row.error:
            row.p50 = statistics.median(r["p50"] for r in row.runs)
            row.p99 = statistics.median(r["p99"] for r in row.runs)
            row.note = "client -> relay -> worker process -> relay -> client (bench/ceiling.c --rtt)"
        for label, db, sync in (("--db :memory:", ":memory:", "off"),
                                ("durable, sync full", "bench.db", "full"),
                                ("durable, sync acked", "bench.db", "acked"),
                                ("durable, sync interval", "bench.db", "interval")):
            def one(row, db=db, sync=sync):
                # The floor again right before each run: the host's wakeup
                # cost moves from one minute to the next, and the ratio to
                # what ran just before is the figure that travels.
                relay, _ = self.relay_rtt(samples)
                cl = Cluster(self.bin, self.workdir, db=db, sync=sync, workers=1, threads=1)
                try:
                    cl.start()
                    cpu0 = cl.cpu()
                    out, wall, ccpu = run_client(
                        [self.tool("zt-load"), "--master", cl.api, "latency", "--samples",
                         str(samples), "--timeout", "300"], 330,
                        os.path.join(self.workdir, "client.log"))
                    cpu1 = cl.cpu()
                    res = last_json(out)
                    run = {"rate": 1000.0 / res["mean_ms"], "p50": res["p50_ms"],
                           "p99": res["p99_ms"], "rss_kb": cl.master_peak_kb(),
                           "poll_rtt_us": res["poll_rtt_us"], "relay_p50": relay["p50_ms"],
                           "cpu": {"master": cpu1["master"] - cpu0["master"],
                                   "workers": cpu1["workers"] - cpu0["workers"],
                                   "client": ccpu},
                           "say": f"p50 {res['p50_ms']:.3f} ms, p99 {res['p99_ms']:.3f} ms "
                                  f"(relay just before: p50 {relay['p50_ms']:.3f} ms)"}
                finally:
                    cl.stop()
                row.rates.append(run["rate"])
                row.runs.append(run)

            row = self.scenario(f"single-task round trip, {label}", samples, one,
                                unit="round trips/s")
            if row and row.runs and not row.error:
                row.p50 = statistics.median(r["p50"] for r in row.runs)
                row.p99 = statistics.median(r["p99"] for r in row.runs)
                rtt = statistics.median(r["poll_rtt_us"] for r in row.runs)
                ratio = statistics.median(r["p50"] / r["relay_p50"] for r in row.runs)
                row.note = (f"one submit, answered when its result is committed; p50 {ratio:.2f}x the "
                            f"relay's, run just before each (plain status RTT {rtt:.0f} us); "
                            f"target :memory: p50 < 0.5 ms, p99 < 2 ms")

    def python_client(self):
        """Submit + collect from Python: the Python client (bench/py_load.py)
        next to the C CLI (`submit --wait --json`, every record printed)
        doing the same work, and next to the notes' multiprocessing managers
        (bench/mp_managers.py: a BaseManager-served queue on loopback, an
        authkey, 2 worker processes computing n*n). Runs alternate, so the
        three see the same machine; the managers get fewer tasks (every
        put and get is a round trip through the manager process)."""
        n = scaled(200000, self.scale, 1000)
        n_mp = scaled(20000, self.scale, 500)
        pf = self.prefetch[-1]
        rows = [(kind, Row(name, count)) for kind, name, count in (
            ("cli", f"C CLI submit --wait --json, fn noop, 2 workers, prefetch {pf}", n),
            ("py", f"python client submit+collect of fn noop tasks, 2 workers, prefetch {pf}", n),
            ("mp", "python multiprocessing managers (the notes' way), 2 worker processes", n_mp))
            if self.wanted(name)]
        if not rows:
            return
        say(f"== submit + collect from Python (N={n:,}; managers N={n_mp:,}; {self.runs} runs)")
        for _, row in rows:
            self.rows.append(row)
        for i in range(self.runs):
            for kind, row in rows:
                if row.error:
                    continue
                try:
                    run = (self.managers_run(n_mp) if kind == "mp"
                           else self.client_run(kind, row.n, pf))
                except (BenchError, OSError, ValueError, KeyError) as e:
                    row.error = f"{type(e).__name__}: {e}"[:300]
                    say(f"   run {i + 1}: {kind}: FAILED: {row.error}")
                    continue
                row.rates.append(run["rate"])
                row.runs.append(run)
                say(f"   run {i + 1}: {kind}: {run['rate']:,.0f} tasks/s  {run.get('say', '')}")
        rate = {kind: row.rate() for kind, row in rows if not row.error}
        for kind, row in rows:
            if kind == "py" and rate.get("py"):
                r = row.median_run()
                parts = [f"client peak RSS {r['client_rss_kb'] / 1024:.0f} MiB",
                         f"submit {r['submit_s']:.2f}s"]
                if rate.get("cli"):
                    parts.insert(0, f"{rate['py'] / rate['cli']:.2f}x the C CLI")
                if rate.get("mp"):
                    parts.insert(1, f"{rate['py'] / rate['mp']:.1f}x the managers")
                row.note = "; ".join(parts)
            elif kind == "cli":
                row.note = "every record printed as a JSON line (results --json)"
            elif kind == "mp":
                row.note = "not durable; every put/get a round trip to the manager process"

    def client_run(self, kind, n, prefetch):
        """One submit + collect of n fn noop tasks by the C CLI or py-load."""
        cl = Cluster(self.bin, self.workdir, db="bench.db", sync="full", prefetch=prefetch,
                     workers=2, threads=self.threads)
        try:
            cl.start()
            cpu0 = cl.cpu()
            if kind == "cli":
                argv = [os.path.join(self.bin, "ztask"), "--master", cl.api, "submit", "--fn",
                        "noop", "--array", f"0-{n - 1}", "--wait", "--quiet", "--json"]
            else:
                argv = [self.python, os.path.join(HERE, "py_load.py"), "--master", cl.api,
                        "--n", str(n), "--timeout", str(self.timeout_for(n))]
            out, wall, ccpu = run_client(argv, self.timeout_for(n) + 30,
                                         os.path.join(self.workdir, "client.log"))
            cpu1 = cl.cpu()
            run = {"rss_kb": cl.master_peak_kb(),
                   "cpu": {"master": cpu1["master"] - cpu0["master"],
                           "workers": cpu1["workers"] - cpu0["workers"],
                           "workers_own": cpu1["workers_own"] - cpu0["workers_own"],
                           "client": ccpu}}
            if kind == "cli":
                records = sum(1 for line in out.splitlines() if line.startswith('{"task"'))
                if records != n:
                    raise BenchError(f"the CLI printed {records} records of {n}")
                run["rate"] = n / wall
            else:
                res = last_json(out)
                run.update(rate=res["tasks_per_s"], submit_s=res["submit_s"],
                           client_rss_kb=res["rss_kb"],
                           say=f"submit {res['submit_s']:.2f}s, client peak RSS "
                               f"{res['rss_kb'] / 1024:.0f} MiB")
        finally:
            cl.stop()
        return run

    def managers_run(self, n):
        out, wall, cpu = run_client([self.python, os.path.join(HERE, "mp_managers.py"), "--n",
                                     str(n), "--workers", "2"], self.timeout_for(n, 200) + 30)
        return {"rate": last_json(out)["tasks_per_s"], "cpu": {"client": cpu}}

    def noop_ab(self):
        """fn noop at default resources, this build against BENCH_BASE,
        alternating run by run (the cost of resource-aware placement)."""
        if not self.base_bin:
            return
        n = scaled(200000, self.scale, 1000)
        pf = self.prefetch[-1]
        name = f"fn noop, 2 workers, sync full, prefetch {pf}"
        if not self.wanted(name + " A/B"):
            return
        rows = [Row(f"{name} (A: {self.base_name})", n, "tasks/s"),
                Row(f"{name} (B: this build)", n, "tasks/s")]
        self.rows.extend(rows)
        say(f"== {name} A/B (N={n:,}, {self.runs} pairs)")
        for i in range(self.runs):
            for row, bin_dir in ((rows[0], self.base_bin), (rows[1], self.bin)):
                try:
                    self.throughput_run(row, n, 2, self.threads, pf, bin_dir=bin_dir)
                except (BenchError, OSError, ValueError, KeyError) as e:
                    row.error = f"{type(e).__name__}: {e}"[:300]
                    say(f"   {row.name}: FAILED: {row.error}")
                    return
                say(f"   pair {i + 1} {row.name[-14:]}: {row.rates[-1]:,.0f} tasks/s")
        a, b = rows[0].rate(), rows[1].rate()
        if a and b:
            rows[1].note = f"{b / a:.3f}x of A"

    def mixed_resources(self):
        """Tasks asking 1, 2 or 4 CPUs or one "acc" (a GPU-like custom
        resource, with 1 CPU), interleaved in one job, on 4 workers that
        declare cpus=4,acc=1: the rate, and the utilisation reached:
        resource-seconds the tasks held over what the workers declared,
        from the first start to the last end (everything is queued at the
        start, so that is while work waited)."""
        per = scaled(400, self.scale, 20)
        secs = float(os.environ.get("BENCH_MIXED_SECONDS", "0.1"))
        name = f"mixed requests (cpus 1/2/4, acc=1), 4 workers cpus=4,acc=1, fn sleep {secs}s"
        kinds = [{"cpus": 1}, {"cpus": 2}, {"cpus": 4}, {"cpus": 1, "acc": 1}]
        path = os.path.join(self.workdir, "mixed.jsonl")
        with open(path, "w") as f:
            for i in range(4 * per):
                f.write(json.dumps({"fn": "sleep", "args": {"seconds": secs},
                                    "resources": kinds[i % 4]}) + "\n")

        def one(row):
            cl = Cluster(self.bin, self.workdir, db="bench.db", workers=4, threads=8,
                         prefetch="auto", worker_args=["--resources", "cpus=4,acc=1"])
            try:
                cl.start()
                t0 = time.monotonic()
                out, _ = cl.cli("submit", "-q", "--file", path)
                job = out.strip().splitlines()[-1]
                cl.cli("wait", job, "--quiet", timeout=self.timeout_for(4 * per, 5))
                wall = time.monotonic() - t0
                held = {"cpus": 0.0, "acc": 0.0}
                first, last = None, None
                out, _ = cl.cli("results", job, "--json")
                for line in out.splitlines():
                    r = json.loads(line)
                    k = kinds[r["index"] % 4]
                    d = r["finished"] - r["started"]
                    held["cpus"] += k["cpus"] * d
                    held["acc"] += k.get("acc", 0) * d
                    first = r["started"] if first is None else min(first, r["started"])
                    last = r["finished"] if last is None else max(last, r["finished"])
            finally:
                cl.stop()
            span = last - first
            util = {k: held[k] / (span * (16 if k == "cpus" else 4)) for k in held}
            row.rates.append(4 * per / wall)
            row.runs.append({"rate": 4 * per / wall, "say": f"cpus {util['cpus']:.0%}, acc "
                             f"{util['acc']:.0%} of declared, over {span:.1f} s"})
            row.note = row.runs[-1]["say"]

        self.scenario(name, 4 * per, one)

    def run_all(self):
        self.ceiling_row = None
        try:
            self.ceiling()
            self._run_rest()
        finally:
            self.ceiling_notes()

    def _run_rest(self):
        self.noop_ab()
        self.mixed_resources()
        self.noop_workers()
        self.http_overhead()
        self.sync_modes()
        self.exec_true()
        self.submit_1m()
        self.many_workers()
        self.latency()
        self.python_client()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--out", help="also write the table as markdown to this file")
    args = ap.parse_args()
    install_signal_exit()
    workdir = prepare_workdir(os.path.join(args.build, "bench", "run"))
    info = machine_info()
    base = os.environ.get("BENCH_BASE")
    base_bin = None
    if base:
        # Its daemons only (the load programs are this build's), copied
        # like ours so a rebuild there changes nothing mid-run.
        base_bin = os.path.join(snapshot_build(base, os.path.join(workdir, "base")), "bin")
    bench = Bench(snapshot_build(args.build, os.path.join(workdir, "snapshot")), workdir,
                  base_bin, os.environ.get("BENCH_BASE_NAME") or base)
    t0 = time.monotonic()
    say(machine_header(info))
    try:
        bench.run_all()
    except KeyboardInterrupt:
        say("interrupted; the table so far:")
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - t0
    fsync = fsync_ms(os.path.join(args.build, "bench"))
    extra = (f"; database on {fs_type(args.build)} (fdatasync p50 {fsync:.2f} ms); "
             f"BENCH_SCALE={bench.scale:g} "
             f"runs={bench.runs} threads/worker={bench.threads}; took {elapsed:.0f} s")
    head = machine_header(info, extra)
    print()
    print(head)
    print(format_table(bench.rows))
    out = args.out or os.path.join(args.build, "bench", "last-run.md")
    with open(out, "w") as f:
        f.write(head + "\n\n" + format_table(bench.rows, markdown=True) + "\n")
    say(f"(markdown copy: {out})")
    return 1 if any(r.error for r in bench.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
