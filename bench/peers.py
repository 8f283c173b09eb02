#!/usr/bin/env python3
"""ztask against the alternatives: `make bench-peers` runs this (after
bench/install-peers.sh).

    python3 bench/peers.py [--build build/release] [--out FILE.md]

The same work on every system, in the same run, on 127.0.0.1:

  fn noop   N tiny JSON task objects submitted by one client, run by 2
            worker processes that each answer one small JSON result,
            every result collected:
              ztask (sync full, sync interval, --db :memory:),
              the ceiling (bench/ceiling.c: ZeroMQ PUSH/PULL + cJSON, no state),
              gearmand (bench/gearman_load.c, libgearman, foreground jobs),
              beanstalkd without binlog, with binlog (fsync every 50 ms,
              its default), with binlog and -f0 (fsync always)
              (bench/beanstalk_load.c, text protocol),
              Celery 5 + Redis, prefork, concurrency 2 (bench/celery_load.py)
  exec true N runs of `true`, 2 at a time:
              ztask (1 worker x 2 threads), posix_spawn loop (bench/spawn_loop.c),
              xargs -P2, GNU parallel -j2

Runs are interleaved round-robin (system A run 1, B run 1, ..., A run 2,
...) so every system sees the same machine; tasks/s is the median of the
runs. The last columns give ztask's ratio to each row (ztask's tasks/s
divided by the row's). A peer that is not installed is skipped with a
line saying so. Every server is fresh for every run and stopped after it.

Environment: BENCH_SCALE, BENCH_RUNS, BENCH_PREFETCH (the last value is
used for ztask here), BENCH_THREADS, BENCH_ONLY, BENCH_KEEP (bench/run.py).
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, HERE)
from benchlib import (BenchError, Proc, Row, env_float, env_int, free_port,  # noqa: E402
                      fs_type, fsync_ms, install_signal_exit, last_json, machine_header, machine_info,
                      prepare_workdir, proc_cpu_seconds, render, run_client, say, scaled,
                      snapshot_build)
from run import Bench  # noqa: E402

SYS_PYTHON = "/usr/bin/python3"   # Debian's, where python3-celery lives


def wait_port(port, proc, timeout=20):
    """Waits (bounded) until 127.0.0.1:port accepts a connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.argv[0]} exited: {proc.tail()}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise BenchError(f"{proc.argv[0]} not listening on {port} within {timeout}s")


class System:
    """One row: a name, N, a kind ("noop" or "exec") and a run function that
    returns {"rate": ..., "cpu": {...}} for one measured run."""

    def __init__(self, name, n, kind, run, skip=None):
        self.row = Row(name, n)
        self.kind = kind
        self.run = run
        self.skip = skip


class Peers:
    def __init__(self, build, workdir):
        self.build = build
        self.workdir = workdir
        self.bench = Bench(build, workdir)
        self.scale = self.bench.scale
        self.runs = self.bench.runs
        self.pf = self.bench.prefetch[-1]
        self.tool = self.bench.tool
        self.n_noop = scaled(200000, self.scale, 1000)
        self.n_exec = scaled(5000, self.scale, 200)
        self.skipped = []
        self.all = []      # every System, filled by run(), kept if interrupted

    # ---- ztask (the same runs as bench/run.py) ----

    def ztask_noop(self, db, sync):
        def run():
            row = Row("", self.n_noop)
            return self.bench.throughput_run(row, self.n_noop, 2, self.bench.threads, self.pf,
                                             db=db, sync=sync)
        return run

    def ztask_exec(self):
        row = Row("", self.n_exec)
        return self.bench.throughput_run(row, self.n_exec, 1, 2, self.pf, exec_=True)

    # ---- peers ----

    def server(self, argv, name):
        port = free_port()
        argv = [a.replace("{port}", str(port)) for a in argv]
        proc = Proc(argv, os.path.join(self.workdir, f"{name}.log"))
        try:
            wait_port(port, proc)
        except BenchError:
            proc.stop()
            raise
        return proc, port

    def ceiling(self):
        out, wall, cpu = run_client([self.tool("ceiling"), "--n", str(self.n_noop), "--workers",
                                     "2", "--timeout", "300"], 330)
        return {"rate": last_json(out)["tasks_per_s"], "cpu": {"client": cpu}}

    def gearman(self):
        srv, port = self.server(["gearmand", "--listen", "127.0.0.1", "--port", "{port}",
                                 "--log-file", "none", "--pid-file",
                                 os.path.join(self.workdir, "gearmand.pid")], "gearmand")
        try:
            c0 = proc_cpu_seconds(srv.pid) or 0.0
            out, wall, cpu = run_client([self.tool("gearman-load"), "--port", str(port), "--n",
                                         str(self.n_noop), "--workers", "2", "--timeout", "300"],
                                        330, os.path.join(self.workdir, "gearman-load.log"))
            c1 = proc_cpu_seconds(srv.pid) or 0.0
        finally:
            srv.stop()
        return {"rate": last_json(out)["tasks_per_s"], "cpu": {"master": c1 - c0, "client": cpu}}

    def beanstalk(self, extra, n):
        def run():
            binlog = os.path.join(self.workdir, "binlog")
            shutil.rmtree(binlog, ignore_errors=True)
            os.makedirs(binlog)
            args = [a.replace("{binlog}", binlog) for a in extra]
            srv, port = self.server(["beanstalkd", "-l", "127.0.0.1", "-p", "{port}"] + args,
                                    "beanstalkd")
            try:
                c0 = proc_cpu_seconds(srv.pid) or 0.0
                out, wall, cpu = run_client(
                    [self.tool("beanstalk-load"), "--port", str(port), "--n", str(n),
                     "--workers", "2", "--timeout", "300"], 330,
                    os.path.join(self.workdir, "beanstalk-load.log"))
                c1 = proc_cpu_seconds(srv.pid) or 0.0
            finally:
                srv.stop()
            return {"rate": last_json(out)["tasks_per_s"],
                    "cpu": {"master": c1 - c0, "client": cpu}}
        return run

    def celery(self, n):
        def run():
            redis, port = self.server(["redis-server", "--port", "{port}", "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"], "redis")
            env = dict(os.environ, BENCH_REDIS_URL=f"redis://127.0.0.1:{port}/0",
                       PYTHONPATH=HERE, PYTHONDONTWRITEBYTECODE="1")
            worker = None
            try:
                worker = Proc([SYS_PYTHON, "-m", "celery", "-A", "celery_load", "worker",
                               "-P", "prefork", "--concurrency", "2", "--loglevel", "WARNING",
                               "--without-gossip", "--without-mingle", "--without-heartbeat"],
                              os.path.join(self.workdir, "celery-worker.log"), env=env, cwd=HERE)
                c0 = (proc_cpu_seconds(redis.pid) or 0.0)
                out, wall, cpu = run_client([SYS_PYTHON, os.path.join(HERE, "celery_load.py"),
                                             "--n", str(n), "--timeout", "300"], 360,
                                            os.path.join(self.workdir, "celery-client.log"),
                                            env=env)
                c1 = (proc_cpu_seconds(redis.pid) or 0.0)
            finally:
                if worker:
                    worker.stop(30)
                redis.stop()
            return {"rate": last_json(out)["tasks_per_s"],
                    "cpu": {"master": c1 - c0, "client": cpu}}
        return run

    def shell(self, n, cmd):
        """Runs `seq n | cmd` under sh; the rate is n over its wall time."""
        def run():
            out, wall, cpu = run_client(["sh", "-c", f"seq {n} | {cmd}"], 600)
            return {"rate": n / wall, "cpu": {"client": cpu}}
        return run

    def spawn(self):
        out, wall, cpu = run_client([self.tool("spawn-loop"), "--n", str(self.n_exec),
                                     "--inflight", "2", "--", "true"], 300)
        return {"rate": last_json(out)["tasks_per_s"], "cpu": {"client": cpu}}

    # ---- the run ----

    def systems(self):
        s = []
        pf = f"prefetch {self.pf}"
        s.append(System(f"ztask fn noop, 2 workers, sync full, {pf}", self.n_noop, "noop",
                        self.ztask_noop("bench.db", "full")))
        s.append(System(f"ztask fn noop, 2 workers, sync interval, {pf}", self.n_noop, "noop",
                        self.ztask_noop("bench.db", "interval")))
        s.append(System(f"ztask fn noop, 2 workers, --db :memory:, {pf}", self.n_noop, "noop",
                        self.ztask_noop(":memory:", "off")))
        s.append(System("ceiling: ZeroMQ PUSH/PULL + cJSON, no state", self.n_noop, "noop",
                        self.ceiling))

        def need(bins, what):
            missing = [b for b in bins if not (os.path.isabs(b) and os.access(b, os.X_OK))
                       and not shutil.which(b)]
            return f"{what}: not installed ({', '.join(missing)})" if missing else None

        s.append(System("gearmand (libgearman client + 2 workers)", self.n_noop, "noop",
                        self.gearman,
                        need(["gearmand", self.tool("gearman-load")], "gearmand")))
        beans = need(["beanstalkd", self.tool("beanstalk-load")], "beanstalkd")
        s.append(System("beanstalkd, no binlog", self.n_noop, "noop",
                        self.beanstalk([], self.n_noop), beans))
        s.append(System("beanstalkd, binlog (fsync every 50 ms, default)", self.n_noop, "noop",
                        self.beanstalk(["-b", "{binlog}"], self.n_noop), beans))
        # An fsync per put and per delete: ~1,000/s, so a smaller N.
        n_f0 = scaled(2000, self.scale, 100)
        s.append(System("beanstalkd, binlog -f0 (fsync always)", n_f0, "noop",
                        self.beanstalk(["-b", "{binlog}", "-f0"], n_f0), beans))
        n_cel = scaled(2000, self.scale, 100)
        cel = need(["redis-server", SYS_PYTHON], "celery")
        if not cel:
            probe = subprocess.run([SYS_PYTHON, "-c", "import celery, redis"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if probe.returncode != 0:
                cel = "celery: python3-celery / python3-redis not importable by " + SYS_PYTHON
        s.append(System("Celery 5 + Redis, prefork, concurrency 2", n_cel, "noop",
                        self.celery(n_cel), cel))

        s.append(System(f"ztask exec `true`, 1 worker x 2 threads, {pf}", self.n_exec, "exec",
                        self.ztask_exec))
        s.append(System("posix_spawn loop `true`, 2 threads x 1 in flight", self.n_exec, "exec",
                        self.spawn))
        s.append(System("xargs -P2 true", self.n_exec, "exec",
                        self.shell(self.n_exec, "xargs -P2 -n1 true")))
        n_par = scaled(500, self.scale, 50)
        s.append(System("GNU parallel -j2 true", n_par, "exec",
                        self.shell(n_par, "parallel --will-cite -j2 true"),
                        need(["parallel"], "GNU parallel")))
        if self.bench.only:
            s = [x for x in s if self.bench.wanted(x.row.name)]
        return s

    def run(self):
        self.all = systems = self.systems()
        for x in systems:
            if x.skip:
                say(f"SKIPPED {x.skip}")
                self.skipped.append(x.skip)
        live = [x for x in systems if not x.skip]
        for i in range(self.runs):
            say(f"== round {i + 1} of {self.runs}")
            for x in live:
                if x.row.error:
                    continue
                try:
                    r = x.run()
                except (BenchError, OSError, ValueError, KeyError) as e:
                    x.row.error = f"{type(e).__name__}: {e}"[:300]
                    say(f"   {x.row.name}: FAILED: {x.row.error}")
                    continue
                x.row.rates.append(r["rate"])
                x.row.runs.append(r)
                say(f"   {x.row.name}: {r['rate']:,.0f}/s")
        return systems


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def table(systems, markdown=False):
    zt = {x.row.name: x.row.rate() for x in systems
          if x.row.name.startswith("ztask") and not x.row.error and not x.skip}
    full = next((v for k, v in zt.items() if "sync full" in k), None)
    mem = next((v for k, v in zt.items() if ":memory:" in k), None)
    ex = next((v for k, v in zt.items() if "exec" in k), None)
    header = ["system", "N", "tasks/s", "spread", "CPU s server/client", "ztask ÷ this"]
    aligns = ["<", ">", ">", ">", ">", "<"]
    cells = []
    for x in systems:
        r = x.row
        if x.skip:
            cells.append([r.name, "-", "-", "-", "-", "SKIPPED: " + x.skip])
            continue
        if r.error or not r.rates:
            cells.append([r.name, f"{r.n:,}", "-", "-", "-", "FAILED: " + (r.error or "no run")])
            continue
        rate = r.rate()
        spread = (f"±{(max(r.rates) - min(r.rates)) / 2 / rate * 100:.0f}%"
                  if len(r.rates) > 1 else "-")
        cpu = r.median_run().get("cpu", {})
        cpu_s = f"{cpu.get('master', 0):.1f}/{cpu.get('client', 0) + cpu.get('workers', 0):.1f}"
        if x.kind == "noop":
            note = f"sync full {ratio(full, rate)}, :memory: {ratio(mem, rate)}"
        else:
            note = f"exec {ratio(ex, rate)}"
        cells.append([r.name, f"{r.n:,}", f"{rate:,.0f}", spread, cpu_s, note])
    return render(header, aligns, cells, markdown)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--out", help="also write the table as markdown to this file")
    args = ap.parse_args()
    install_signal_exit()
    workdir = prepare_workdir(os.path.join(args.build, "bench", "peers"))
    info = machine_info()
    peers = Peers(snapshot_build(args.build, os.path.join(workdir, "snapshot")), workdir)
    say(machine_header(info))
    t0 = time.monotonic()
    try:
        peers.run()
    except KeyboardInterrupt:
        say("interrupted; the table so far:")
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)
    fsync = fsync_ms(os.path.join(args.build, "bench"))
    extra = (f"; database on {fs_type(args.build)} (fdatasync p50 {fsync:.2f} ms); "
             f"BENCH_SCALE={peers.scale:g} "
             f"runs={peers.runs}; took {time.monotonic() - t0:.0f} s")
    head = machine_header(info, extra)
    systems = peers.all
    print()
    print(head)
    for line in peers.skipped:
        print("SKIPPED " + line)
    print(table(systems))
    out = args.out or os.path.join(args.build, "bench", "last-peers.md")
    with open(out, "w") as f:
        f.write(head + "\n\n" + table(systems, markdown=True) + "\n")
    say(f"(markdown copy: {out})")
    return 1 if any(x.row.error for x in systems) else 0


if __name__ == "__main__":
    sys.exit(main())
