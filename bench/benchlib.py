"""benchlib: what bench/run.py and bench/peers.py share.

Starting and stopping processes with their logs in a run directory, a
ztask cluster on loopback (master on port 0, workers waiting for their
registration line), CPU and memory readings from /proc, medians, and the
result table.

Every wait here is bounded: a process that does not print its readiness
line within its timeout, or a client that overruns, raises BenchError, and
the caller's `finally` stops whatever was started (SIGTERM, then SIGKILL
after a grace period). Only processes this module started are signalled,
by their pid.
"""

import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def env_float(name, default):
    text = os.environ.get(name, "")
    try:
        return float(text) if text else default
    except ValueError:
        raise BenchError(f"{name}={text!r} is not a number")


def env_int(name, default):
    return int(env_float(name, default))


def scaled(n, scale, minimum=1):
    return max(minimum, int(round(n * scale)))


def free_port():
    """A port that was free a moment ago, for servers that cannot bind port 0
    and report it (gearmand, beanstalkd, redis). The small race with other
    programs binding it is accepted: a clash shows up as a start failure."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- /proc ---

def proc_cpu_seconds(pid, children=True):
    """utime + stime of pid (and of its reaped children when asked), in
    seconds; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def proc_status_kb(pid, key):
    """A kB value from /proc/PID/status (VmRSS, VmHWM); None if unavailable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def children_cpu_seconds():
    """CPU of every child this Python process has reaped so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def machine_info():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        load = ["?"] * 3
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": os.uname().release,
        "load": " ".join(load),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        # Read with the rest at the start: the binaries are snapshot then,
        # and the tree may move on while the run lasts.
        "source": source_version(),
    }


def fs_type(path):
    """The filesystem type holding path (for the durable-state numbers)."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


# ------------------------------------------------------------ processes ---

class Proc:
    """A process we started, its output in a log file."""

    def __init__(self, argv, log_path, env=None, cwd=None):
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "wb")
        # Its own process group, so a SIGKILL reaches what it forked too.
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                  stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                  start_new_session=True)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def wait_line(self, pattern, timeout):
        """Waits (bounded) for a line matching pattern in the log; returns the
        match. Raises BenchError on timeout or if the process exits first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                m = rx.search(f.read().decode("utf-8", "replace"))
            if m:
                return m
            if not self.alive():
                raise BenchError(f"{self.argv[0]} exited ({self.p.returncode}) before "
                                 f"'{pattern}'; log: {self.tail()}")
            time.sleep(0.01)
        raise BenchError(f"no '{pattern}' from {self.argv[0]} within {timeout}s; log: {self.tail()}")

    def tail(self, lines=3):
        try:
            with open(self.log_path, "rb") as f:
                return " | ".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        """Waits up to timeout; SIGKILLs after it. Returns the exit code."""
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return self.p.wait(timeout=10)
        finally:
            self.log.close()

    def stop(self, timeout=10):
        self.signal(signal.SIGTERM)
        return self.wait(timeout)


def run_client(argv, timeout, log_path=None, env=None):
    """Runs a client to completion (bounded). Returns (stdout text, wall
    seconds, CPU seconds of the client and anything it reaped)."""
    cpu0 = children_cpu_seconds()
    t0 = time.monotonic()
    err = open(log_path, "wb") if log_path else subprocess.DEVNULL
    # Its own process group: on a timeout the client and anything it
    # spawned (workers of a peer's load program) are killed together.
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                         env=env, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise BenchError(f"{os.path.basename(argv[0])} overran {timeout}s")
    except BaseException:
        # Ctrl-C or SIGTERM on the bench: the client goes with it.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        raise
    finally:
        if log_path:
            err.close()
    wall = time.monotonic() - t0
    cpu = children_cpu_seconds() - cpu0
    if p.returncode != 0:
        tail = ""
        if log_path:
            tail = open(log_path, "rb").read().decode("utf-8", "replace")[-400:]
        raise BenchError(f"{' '.join(argv[:3])}... exit {p.returncode}: {tail.strip()}")
    return out.decode(), wall, cpu


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"no JSON line in: {text[:200]!r}")


# ------------------------------------------------------------- cluster ---

_FLAGS = {}


def _has_flag(program, flag):
    """Whether PROGRAM's --help names FLAG (asked once per program)."""
    if program not in _FLAGS:
        try:
            p = subprocess.run([program, "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=10)
            _FLAGS[program] = p.stdout.decode(errors="replace")
        except (OSError, subprocess.TimeoutExpired):
            _FLAGS[program] = ""
    return flag in _FLAGS[program]


class Cluster:
    """A ztask master and its workers on 127.0.0.1, fresh for one run.

    db: ":memory:" or a file name inside workdir (removed before the start).
    sync: a --sync mode, or None for the master's default.
    """

    def __init__(self, bin_dir, workdir, db=":memory:", sync="full", prefetch=0, workers=2,
                 threads=4, master_args=(), master_wrap=(), worker_wrap=(), ready_timeout=20,
                 worker_args=()):
        self.bin_dir = bin_dir
        self.workdir = workdir
        self.db = db if db == ":memory:" else os.path.join(workdir, db)
        self.sync = sync
        self.prefetch = prefetch
        self.nworkers = workers
        self.threads = threads
        self.master_args = list(master_args)
        # Prefixes for the command lines (valgrind ...), and the readiness
        # wait to go with them: a program under valgrind starts slowly.
        self.master_wrap = list(master_wrap)
        self.worker_wrap = list(worker_wrap)
        self.worker_args = list(worker_args)
        self.ready_timeout = ready_timeout
        self.master = None
        self.workers = []
        self.api = None

    def start(self):
        if self.db != ":memory:":
            for suffix in ("", "-wal", "-shm", "-journal"):
                if os.path.exists(self.db + suffix):
                    os.unlink(self.db + suffix)
        # sync None: the master's own default (an A/B of two builds then
        # compares what each gives its users).
        argv = [os.path.join(self.bin_dir, "ztask-master"), "--db", self.db, "--port", "0",
                "--bind", "127.0.0.1", "--prefetch", str(self.prefetch)]
        if self.sync:
            argv += ["--sync", self.sync]
        self.master = Proc(self.master_wrap + argv + self.master_args,
                           os.path.join(self.workdir, "master.log"))
        m = self.master.wait_line(r"event=listening api=tcp://([0-9.]+:\d+)", self.ready_timeout)
        self.api = m.group(1)
        self.add_workers(self.nworkers, self.threads)
        return self

    def add_workers(self, count, threads):
        new = []
        for _ in range(count):
            i = len(self.workers)
            argv = [os.path.join(self.bin_dir, "ztask-worker"), "--master", self.api,
                    "--threads", str(threads), "--name", f"bw{i}"] + self.worker_args
            # Commands as root for a master without keys: told so (a build
            # older than the flag, an A/B's base, runs them without it).
            if os.geteuid() == 0 and _has_flag(os.path.join(self.bin_dir, "ztask-worker"),
                                               "--allow-root"):
                argv.append("--allow-root")
            w = Proc(self.worker_wrap + argv, os.path.join(self.workdir, f"worker{i}.log"))
            self.workers.append(w)
            new.append(w)
        for w in new:
            w.wait_line(r"event=registered", self.ready_timeout + 10 + count // 4)

    def cpu(self):
        """{"master": s, "workers": s, "workers_own": s}: CPU so far
        (workers summed, with the children they reaped, i.e. the commands
        of exec tasks; workers_own without them)."""
        return {"master": proc_cpu_seconds(self.master.pid, children=False) or 0.0,
                "workers": sum(proc_cpu_seconds(w.pid) or 0.0 for w in self.workers),
                "workers_own": sum(proc_cpu_seconds(w.pid, children=False) or 0.0
                                   for w in self.workers)}

    def master_rss_kb(self):
        return proc_status_kb(self.master.pid, "VmRSS")

    def master_peak_kb(self):
        return proc_status_kb(self.master.pid, "VmHWM")

    def cli(self, *args, timeout=60):
        out, wall, _ = run_client([os.path.join(self.bin_dir, "ztask"), "--master", self.api]
                                  + list(args), timeout)
        return out, wall

    def stop(self):
        """Workers first (so they can say bye), then the master; bounded."""
        for w in self.workers:
            w.signal(signal.SIGTERM)
        grace = max(15, self.ready_timeout)
        for w in self.workers:
            w.wait(grace)
        if self.master:
            self.master.stop(grace)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


# --------------------------------------------------------------- results ---

class Row:
    """One scenario's line in the table. rates: tasks/s of each run."""

    def __init__(self, name, n, unit="tasks/s"):
        self.name = name
        self.n = n
        self.rates = []
        self.runs = []        # per run: dict of whatever the scenario measured
        self.p50 = self.p99 = None
        self.note = ""
        self.unit = unit
        self.error = None

    def median_run(self):
        """The run whose rate is the median (lower middle for an even count),
        so the other columns come from one real run."""
        if not self.runs:
            return {}
        order = sorted(range(len(self.rates)), key=lambda i: self.rates[i])
        return self.runs[order[(len(order) - 1) // 2]]

    def rate(self):
        return statistics.median(self.rates) if self.rates else None


def fmt_num(x, digits=0):
    if x is None:
        return "-"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


COLUMNS = [("scenario", "<"), ("N", ">"), ("tasks/s", ">"), ("spread", ">"), ("p50 ms", ">"),
           ("p99 ms", ">"), ("master RSS", ">"), ("CPU s m/w/c", ">"), ("us/task m/w", ">"),
           ("note", "<")]


def row_cells(row):
    if row.error:
        return [row.name, fmt_num(row.n), "-", "-", "-", "-", "-", "-", "-", "FAILED: " + row.error]
    r = row.median_run()
    rate = row.rate()
    spread = "-"
    if len(row.rates) > 1 and rate:
        spread = f"±{(max(row.rates) - min(row.rates)) / 2 / rate * 100:.0f}%"
    cpu = r.get("cpu")
    cpu_s = "-"
    per_task = "-"
    if cpu:
        cpu_s = "/".join(f"{cpu.get(k, 0):.1f}" if k in cpu else "-"
                         for k in ("master", "workers", "client"))
        if row.n and "master" in cpu:
            per_task = f"{cpu['master'] / row.n * 1e6:.0f}/{cpu.get('workers', 0) / row.n * 1e6:.0f}"
    rss = r.get("rss_kb")
    return [row.name, fmt_num(row.n), fmt_num(rate), spread,
            fmt_num(row.p50, 3) if row.p50 is not None else "-",
            fmt_num(row.p99, 3) if row.p99 is not None else "-",
            f"{rss / 1024:.0f} MiB" if rss else "-", cpu_s, per_task, row.note]


def render(header, aligns, cells, markdown=False):
    """A table: header names, aligns ("<" or ">" per column), rows of cell
    strings. Plain text with padded columns (the last one free-form), or
    markdown."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if a == "<" else "---:" for a in aligns) + "|"]
        for c in cells:
            lines.append("| " + " | ".join(x.replace("|", "/") for x in c) + " |")
        return "\n".join(lines)
    widths = [max([len(header[i])] + [len(c[i]) for c in cells]) for i in range(len(header))]
    widths[-1] = 0

    def line(vals):
        return "  ".join(v.ljust(w) if a == "<" else v.rjust(w)
                         for a, v, w in zip(aligns, vals, widths)).rstrip()

    return "\n".join([line(header)] + [line(c) for c in cells])


def format_table(rows, markdown=False):
    return render([c[0] for c in COLUMNS], [c[1] for c in COLUMNS],
                  [row_cells(r) for r in rows], markdown)


def machine_header(info, extra=""):
    return (f"machine: {info['nproc']} CPUs, {info['cpu']}, {info['mem_gib']} GiB, "
            f"Linux {info['kernel']}; load average at start {info['load']}, at end "
            f"{machine_info()['load']}; source {info['source']}" + extra)


def fsync_ms(directory, count=20):
    """Median milliseconds of a 4 KiB write + fdatasync in directory: what
    one durable commit costs at least on this disk (for reading the sync
    full numbers)."""
    path = os.path.join(directory, ".fsync-probe")
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for i in range(count):
            os.pwrite(fd, b"x" * 4096, (i % 4) * 4096)
            t0 = time.monotonic()
            os.fdatasync(fd)
            times.append((time.monotonic() - t0) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times)


def snapshot_build(build, dest):
    """Copies the ztask programs (BUILD/bin) and the bench programs
    (BUILD/bench/*, executables only) into dest/bin and dest/bench, and
    returns dest. Other people rebuild BUILD while a benchmark runs; the
    copy keeps one set of binaries for the whole run (and a program being
    relinked cannot fail a start with ETXTBSY or EACCES)."""
    for sub in ("bin", "bench"):
        src = os.path.join(build, sub)
        out = os.path.join(dest, sub)
        os.makedirs(out, exist_ok=True)
        for name in sorted(os.listdir(src)) if os.path.isdir(src) else []:
            path = os.path.join(src, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                shutil.copy2(path, os.path.join(out, name))
    return dest


def source_version(repo="."):
    """`git describe --always --dirty` of the tree being measured, or "?"."""
    try:
        p = subprocess.run(["git", "-C", repo, "describe", "--always", "--dirty"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
        return p.stdout.decode().strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def prepare_workdir(path):
    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def install_signal_exit():
    """SIGTERM unwinds like Ctrl-C, so every `finally` stops its processes."""
    def on_term(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)


def say(*args):
    print(*args, file=sys.stderr, flush=True)
