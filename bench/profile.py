#!/usr/bin/env python3
"""Where the time goes: the fn noop hot path under callgrind (and perf).

    python3 bench/profile.py [--build build/release] [--n 20000] [--prefetch 64]
                             [--db file|memory] [--sync full] [--no-perf]

Three runs of the fn noop scenario (2 workers x BENCH_THREADS threads):

  1. the master under `valgrind --tool=callgrind`, workers native;
  2. the master native, one worker under callgrind (it runs every task);
  3. everything native at 10x N, sampled by `perf record` (cpu-clock, the
     master's and the workers' pids only), for the kernel's share, which
     callgrind does not see (syscalls, fsync, TCP).

callgrind counts instructions, so its numbers are stable on a busy
machine: instructions per task (Ir / N) is the figure to track between
commits. Outputs go to BUILD/bench/profile/: the raw callgrind files,
callgrind_annotate listings (self and inclusive) and the perf report;
a summary with the top functions per component is printed.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (BenchError, Cluster, env_int, install_signal_exit, last_json,  # noqa: E402
                      machine_header, machine_info, prepare_workdir, run_client, say)

TOP = 25


def annotate(out_file, inclusive, listing):
    argv = ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
            "--threshold=99.9", out_file]
    text = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=300).stdout.decode("utf-8", "replace")
    with open(listing, "w") as f:
        f.write(text)
    return text


LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(\S.*)$")


def parse_annotate(text):
    """(total Ir, [(Ir, percent, function)]) from callgrind_annotate output."""
    total = None
    rows = []
    for line in text.splitlines():
        if "PROGRAM TOTALS" in line:
            m = re.match(r"^\s*([\d,]+)", line)
            if m:
                total = int(m.group(1).replace(",", ""))
            continue
        m = LINE.match(line)
        if m and total is not None:
            fn = m.group(3)
            fn = re.sub(r"^\S*?:", "", fn, count=1) if ":" in fn.split(" ")[0] else fn
            rows.append((int(m.group(1).replace(",", "")), float(m.group(2)), fn.strip()))
    return total, rows


def callgrind_run(args, workdir, which):
    outfile = os.path.join(workdir, f"callgrind.{which}.out")
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={outfile}", "--quiet"]
    cl = Cluster(args.bin, workdir, db=args.dbfile, sync=args.sync, prefetch=args.prefetch,
                 workers=0, threads=args.threads, master_wrap=wrap if which == "master" else (),
                 ready_timeout=120)
    try:
        cl.start()
        if which == "master":
            cl.add_workers(2, args.threads)
        else:
            cl.worker_wrap = wrap
            cl.add_workers(1, args.threads)
        out, wall, _ = run_client([args.zt_load, "--master", cl.api, "throughput", "--n",
                                   str(args.n), "--timeout", "1200"], 1300,
                                  os.path.join(workdir, "client.log"))
        res = last_json(out)
    finally:
        cl.stop()
    if not os.path.exists(outfile):
        raise BenchError(f"callgrind wrote no {outfile}")
    return outfile, res


def perf_run(args, workdir):
    n = args.n * 10
    cl = Cluster(args.bin, workdir, db=args.dbfile, sync=args.sync, prefetch=args.prefetch,
                 workers=2, threads=args.threads)
    data = os.path.join(workdir, "perf.data")
    perf = None
    try:
        cl.start()
        pids = ",".join(str(p.pid) for p in [cl.master] + cl.workers)
        perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "4000", "-g",
                                 "-o", data, "-p", pids], stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(workdir, "perf-record.log"), "wb"))
        time.sleep(0.5)
        out, wall, _ = run_client([args.zt_load, "--master", cl.api, "throughput", "--n", str(n),
                                   "--timeout", "600"], 650, os.path.join(workdir, "client.log"))
        res = last_json(out)
    finally:
        if perf:
            perf.send_signal(signal.SIGINT)
            try:
                perf.wait(60)
            except subprocess.TimeoutExpired:
                perf.kill()
                perf.wait()
        cl.stop()
    report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                             "--sort", "comm,dso,symbol", "-g", "none", "--percent-limit", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=300)
    text = report.stdout.decode("utf-8", "replace")
    with open(os.path.join(args.outdir, "perf.txt"), "w") as f:
        f.write(text)
    return text, res, n


def summarize(which, n, outfile, args):
    self_text = annotate(outfile, False, os.path.join(args.outdir, f"{which}.self.txt"))
    incl_text = annotate(outfile, True, os.path.join(args.outdir, f"{which}.inclusive.txt"))
    total, self_rows = parse_annotate(self_text)
    _, incl_rows = parse_annotate(incl_text)
    lines = [f"## {which}: {total:,} instructions for {n:,} tasks = {total / n:,.0f} per task"
             if total else f"## {which}: no totals"]
    lines.append(f"top {TOP} by self instructions (Ir, % of {which}, Ir per task):")
    for ir, pct, fn in self_rows[:TOP]:
        lines.append(f"  {pct:5.1f}%  {ir / n:9,.0f}/task  {fn}")
    lines.append(f"top {TOP} by inclusive instructions:")
    for ir, pct, fn in incl_rows[:TOP]:
        lines.append(f"  {pct:5.1f}%  {ir / n:9,.0f}/task  {fn}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--prefetch", type=int,
                    default=int(os.environ.get("BENCH_PREFETCH", "0 64").split()[-1]))
    ap.add_argument("--db", choices=["file", "memory"], default="file")
    ap.add_argument("--sync", default="full")
    ap.add_argument("--no-perf", action="store_true")
    args = ap.parse_args()
    install_signal_exit()
    args.bin = os.path.join(args.build, "bin")
    args.zt_load = os.path.join(args.build, "bench", "zt-load")
    args.threads = env_int("BENCH_THREADS", 4)
    args.dbfile = "bench.db" if args.db == "file" else ":memory:"
    if args.db == "memory":
        args.sync = "off"
    args.outdir = prepare_workdir(os.path.join(args.build, "bench", "profile"))
    workdir = prepare_workdir(os.path.join(args.build, "bench", "profile-run"))
    for tool in ("valgrind", "callgrind_annotate"):
        if not shutil.which(tool):
            say(f"profile: {tool} not found (apt-get install valgrind)")
            return 2
    info = machine_info()
    config = (f"fn noop, 2 workers x {args.threads} threads, db {args.dbfile}, sync {args.sync}, "
              f"prefetch {args.prefetch}")
    report = [machine_header(info), f"scenario: {config}", ""]
    try:
        say(f"== master under callgrind, N={args.n:,} ({config})")
        out, res = callgrind_run(args, workdir, "master")
        shutil.copy(out, args.outdir)
        report.append(summarize("master", args.n, out, args))
        report.append(f"(run under callgrind: {res['tasks_per_s']:,.0f} tasks/s)\n")
        say(f"== one worker under callgrind, N={args.n:,}")
        out, res = callgrind_run(args, workdir, "worker")
        shutil.copy(out, args.outdir)
        report.append(summarize("worker", args.n, out, args))
        report.append(f"(run under callgrind: {res['tasks_per_s']:,.0f} tasks/s)\n")
        if not args.no_perf and shutil.which("perf"):
            say(f"== native, perf record on master and workers, N={args.n * 10:,}")
            text, res, n = perf_run(args, workdir)
            report.append(f"## perf (cpu-clock samples, native run: {res['tasks_per_s']:,.0f} "
                          f"tasks/s, N={n:,}); entries >= 0.5%: comm, object, symbol")
            body = [l for l in text.splitlines() if l.strip() and not l.startswith("#")]
            report.extend("  " + l.strip() for l in body[:40])
    except BenchError as e:
        say(f"profile: FAILED: {e}")
        return 1
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)
    text = "\n".join(report)
    with open(os.path.join(args.outdir, "summary.txt"), "w") as f:
        f.write(text + "\n")
    print(text)
    say(f"(listings and raw files in {args.outdir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
