#!/usr/bin/env python3
"""Where the time goes: the fn noop hot path under callgrind (and perf).

    python3 bench/profile.py [--build build/release] [--n 20000] [--prefetch 64]
                             [--db file|memory] [--sync full] [--no-perf]

Five runs around the fn noop and exec scenarios (2 workers x BENCH_THREADS threads):

  1. the master under `valgrind --tool=callgrind`, workers native;
  2. the master native, one worker under callgrind (it runs every task);
  3. the master under `valgrind --tool=massif` while 5x N tasks are queued
     (no workers): which allocations make the bytes per queued task;
  4. everything native at 10x N, sampled by `perf record` (cpu-clock, the
     master's and the workers' pids only), for the kernel's share, which
     callgrind does not see (syscalls, fsync, TCP, thread switches);
  5. exec `true` natively (1 worker x 2 threads), perf on the worker and
     the commands it forks: the cost of starting a command.

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
                      machine_header, machine_info, prepare_workdir, run_client, say,
                      snapshot_build)

TOP = 25

# The hot path's stations, shown with their inclusive cost per task so a
# change can be followed from one commit to the next (absent ones are skipped).
PHASES = {
    "master": ["api_on_request", "proto_req_decode", "store_task_insert", "proto_spec_encode",
               "tasks_dispatch", "proto_pipe_encode_tasks_raw", "tasks_on_report",
               "proto_report_decode", "proto_result_encode", "master_flush",
               "store_task_set_running", "store_task_finish", "store_commit", "sqlite3_step",
               "pb_dbl", "zmqx_recv", "zmqx_send", "zmq_poll"],
    "worker": ["session_run", "proto_pipe_decode", "pool_submit", "s_thread_main", "s_run",
               "fn_run", "proto_result_encode", "outbox_flush", "proto_report_encode",
               "proto_report_encode_results_raw", "pb_dbl", "log_set_context", "zmqx_recv",
               "zmqx_send"],
}


def annotate(out_file, inclusive, listing):
    argv = ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
            "--threshold=99.9", out_file]
    text = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=300).stdout.decode("utf-8", "replace")
    with open(listing, "w") as f:
        f.write(text)
    return text


LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(\S.*)$")


def function_name(text):
    """'file:function [object]' -> 'function' or 'function (libfoo.so)'.
    The program's own object is left out; '???' files are dropped."""
    obj = ""
    m = re.match(r"^(.*?) \[(.+)\]$", text)
    if m:
        text, obj = m.group(1), os.path.basename(m.group(2))
    head, sep, tail = text.partition(":")
    if sep and ("/" in head or head == "???" or re.search(r"\.[chS]$", head)):
        text = tail
    if obj.startswith("ztask-"):
        obj = ""
    return f"{text} ({obj})" if obj else text


def parse_annotate(text):
    """(total Ir, [(Ir, percent, function)]) from callgrind_annotate output,
    one entry per function (callgrind_annotate may list a function twice,
    under two spellings of its source file)."""
    total = None
    rows = []
    seen = set()
    for line in text.splitlines():
        if "PROGRAM TOTALS" in line:
            m = re.match(r"^\s*([\d,]+)", line)
            if m:
                total = int(m.group(1).replace(",", ""))
            continue
        m = LINE.match(line)
        if m and total is not None:
            name = function_name(m.group(3).strip())
            key = name.split(" (")[0]
            if key in seen:
                continue
            seen.add(key)
            rows.append((int(m.group(1).replace(",", "")), float(m.group(2)), name))
    return total, rows


def callgrind_run(args, workdir, which):
    outfile = os.path.join(workdir, f"callgrind.{which}.out")
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={outfile}", "--quiet"]
    cl = Cluster(args.bin, workdir, db=args.dbfile, sync=args.sync, prefetch=args.prefetch,
                 workers=0, threads=args.threads, master_wrap=wrap if which == "master" else (),
                 ready_timeout=120,
                 # A program under callgrind runs ~50x slower: longer heartbeats
                 # and leases, so nobody is declared dead and no task is
                 # requeued (that would profile recovery, not the hot path).
                 master_args=["--heartbeat-ms", "5000", "--lease", "120"])
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
    texts = []
    for sort, limit in (("comm,dso", "1"), ("comm,dso,symbol", "0.5")):
        report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                                 "--sort", sort, "-g", "none", "--percent-limit", limit],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=300)
        texts.append(report.stdout.decode("utf-8", "replace"))
    with open(os.path.join(args.outdir, "perf.txt"), "w") as f:
        f.write("\n".join(texts))
    shutil.move(data, os.path.join(args.outdir, "perf.data"))
    return texts, res, n


def perf_exec_run(args, workdir):
    """exec `true` natively (1 worker x 2 threads), perf on the worker and
    the commands it starts (-i: children inherit the sampling): where a
    command task's time goes, in the worker and in the kernel."""
    n = max(500, args.n // 4)
    cl = Cluster(args.bin, workdir, db=args.dbfile, sync=args.sync, prefetch=args.prefetch,
                 workers=1, threads=2)
    data = os.path.join(args.outdir, "perf-exec.data")
    perf = None
    try:
        cl.start()
        perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "4000", "-g",
                                 "-o", data, "-p", str(cl.workers[0].pid)],
                                stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(workdir, "perf-exec.log"), "wb"))
        time.sleep(0.5)
        out, wall, _ = run_client([args.zt_load, "--master", cl.api, "throughput", "--n", str(n),
                                   "--exec", "--timeout", "600"], 650,
                                  os.path.join(workdir, "client.log"))
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
    texts = []
    for sort, limit in (("comm,dso", "1"), ("comm,dso,symbol", "0.7")):
        report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                                 "--sort", sort, "-g", "none", "--percent-limit", limit],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=300)
        texts.append(report.stdout.decode("utf-8", "replace"))
    with open(os.path.join(args.outdir, "perf-exec.txt"), "w") as f:
        f.write("\n".join(texts))
    return texts, res, n


def massif_run(args, workdir):
    """The master under massif while a job of args.n * 5 tasks is queued
    (no workers): who holds the memory at the peak."""
    n = args.n * 5
    outfile = os.path.join(args.outdir, "massif.master.out")
    cl = Cluster(args.bin, workdir, db=args.dbfile, sync=args.sync, workers=0,
                 master_wrap=["valgrind", "--tool=massif", f"--massif-out-file={outfile}",
                              "--quiet"], ready_timeout=120)
    try:
        cl.start()
        cl.cli("submit", "--fn", "noop", "--array", f"1-{n}", "--json", timeout=1200)
    finally:
        cl.stop()
    return outfile, n


def massif_peak(outfile, n, depth_max=2):
    """The peak snapshot's allocation tree, two levels, as lines."""
    with open(outfile) as f:
        text = f.read()
    snaps = text.split("snapshot=")
    peak = next((s for s in snaps if "heap_tree=peak" in s), None)
    if not peak:
        return ["(no peak snapshot)"]
    heap = int(re.search(r"mem_heap_B=(\d+)", peak).group(1))
    extra = int(re.search(r"mem_heap_extra_B=(\d+)", peak).group(1))
    lines = [f"## master heap at its peak, {n:,} fn noop tasks queued (valgrind massif): "
             f"{heap / 2**20:,.1f} MiB requested + {extra / 2**20:,.1f} MiB malloc overhead = "
             f"{(heap + extra) / n:,.0f} B/task"]
    for line in peak.splitlines():
        m = re.match(r"^( *)n\d+: (\d+) (.*)$", line)
        if not m:
            continue
        depth = len(m.group(1))
        size = int(m.group(2))
        if depth == 0 or depth > depth_max or size < heap * 0.02:
            continue
        where = re.sub(r"^0x[0-9A-F]+: ", "", m.group(3))
        where = re.sub(r" \(in /.*?\)$| \(.*?/([^/]+:\d+)\)$", lambda mm: f" ({mm.group(1)})"
                       if mm.group(1) else "", where)
        lines.append(f"  {'  ' * (depth - 1)}{size / 2**20:8,.1f} MiB {size / n:6,.0f} B/task  "
                     f"{where}")
    return lines


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
    incl = {name.split(" (")[0]: (ir, pct) for ir, pct, name in incl_rows}
    lines.append("stations of the hot path (inclusive: the function and what it calls):")
    for name in PHASES.get(which, []):
        if name in incl:
            ir, pct = incl[name]
            lines.append(f"  {pct:5.1f}%  {ir / n:9,.0f}/task  {name}")
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
    workdir = prepare_workdir(os.path.join(args.build, "bench", "profile-run"))
    snap = snapshot_build(args.build, os.path.join(workdir, "snapshot"))
    args.bin = os.path.join(snap, "bin")
    args.zt_load = os.path.join(snap, "bench", "zt-load")
    args.threads = env_int("BENCH_THREADS", 4)
    args.dbfile = "bench.db" if args.db == "file" else ":memory:"
    if args.db == "memory":
        args.sync = "off"
    args.outdir = prepare_workdir(os.path.join(args.build, "bench", "profile"))
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
        say(f"== master under massif, {args.n * 5:,} tasks queued")
        out, n = massif_run(args, workdir)
        report.extend(massif_peak(out, n))
        report.append("")
        if not args.no_perf and shutil.which("perf"):
            say(f"== native, perf record on master and workers, N={args.n * 10:,}")
            texts, res, n = perf_run(args, workdir)
            report.append(f"## perf (cpu-clock samples of the master's and workers' threads, "
                          f"native run: {res['tasks_per_s']:,.0f} tasks/s, N={n:,})")
            for title, text, top in (("by thread name and object (>= 1%)", texts[0], 20),
                                     ("by symbol (>= 0.5%)", texts[1], 40)):
                report.append(title + ":")
                body = [l for l in text.splitlines() if l.strip() and not l.startswith("#")]
                report.extend("  " + " ".join(l.split()) for l in body[:top])
            report.append("")
            say("== native exec `true`, perf record on the worker")
            texts, res, n = perf_exec_run(args, workdir)
            report.append(f"## perf, exec `true` (1 worker x 2 threads, native run: "
                          f"{res['tasks_per_s']:,.0f} tasks/s, N={n:,}): the worker and the "
                          f"commands it starts")
            for title, text, top in (("by thread name and object (>= 1%)", texts[0], 20),
                                     ("by symbol (>= 0.7%)", texts[1], 40)):
                report.append(title + ":")
                body = [l for l in text.splitlines() if l.strip() and not l.startswith("#")]
                report.extend("  " + " ".join(l.split()) for l in body[:top])
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
