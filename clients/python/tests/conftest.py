"""Real ztask daemons for the client's tests.

A test asks for ``cluster`` and gets a temp directory where it can start a
master (``--port 0``: the ports come from its ``event=listening`` line) and
workers (each waited for until it logs ``event=registered``). Every
daemon's stderr is read line by line by a thread that keeps the lines and
wakes whoever waits for one (``Proc.wait_line``), so tests synchronise on
what the programs print, never on sleeps. At teardown workers then the
master get SIGTERM and must exit 0 (a process a test killed is exempt),
and no log may hold a sanitizer report.

Environment: ZTASK_BIN_DIR (default build/release/bin of this checkout);
ZTASK_TEST_SLOWDOWN multiplies every wait (3 for asan, 5 for tsan binary
directories when unset), as in tests/e2e/harness.h; ZTASK_PY_INSTALLED=1
tests the ztask package Python finds (pip installed) instead of the tree's.
"""

from __future__ import annotations

import ctypes
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import List, Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
if os.environ.get("ZTASK_PY_INSTALLED") != "1":   # 1: test the installed package instead
    sys.path.insert(0, os.path.dirname(HERE))      # the package from the tree
sys.dont_write_bytecode = True

import ztask  # noqa: E402

BIN_DIR = os.environ.get("ZTASK_BIN_DIR") or os.path.join(REPO, "build", "release", "bin")
SANITIZER = re.compile(r"ERROR: AddressSanitizer|runtime error:|WARNING: ThreadSanitizer|"
                       r"ERROR: LeakSanitizer")


def slowdown() -> float:
    text = os.environ.get("ZTASK_TEST_SLOWDOWN")
    if text:
        return max(1.0, float(text))
    return 5.0 if "/tsan/" in BIN_DIR + "/" else 3.0 if "/asan/" in BIN_DIR + "/" else 1.0


def scaled(seconds: float) -> float:
    return seconds * slowdown()


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: a daemon must not outlive a test run that crashed.
    _libc.prctl(1, signal.SIGKILL)


class Proc:
    """A daemon this test started, its stderr copied to DIR/NAME.log."""

    def __init__(self, argv: List[str], log_path: str, env: Optional[dict] = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self.lines: List[str] = []
        self.cond = threading.Condition()
        self.killed = False
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, env=env, preexec_fn=_die_with_parent)
        self.pid = self.p.pid
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with open(self.log_path, "ab") as log:
            for raw in self.p.stderr:
                log.write(raw)
                log.flush()
                with self.cond:
                    self.lines.append(raw.decode("utf-8", "replace"))
                    self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, pattern: str, count: int = 1, timeout: float = 20.0) -> re.Match:
        """The count-th line matching pattern (a regex) since the start,
        waiting up to timeout (scaled) seconds; fails the test on a
        timeout or when the process ends first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + scaled(timeout)
        with self.cond:
            while True:
                hits = [m for m in map(rx.search, self.lines) if m]
                if len(hits) >= count:
                    return hits[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (not self.reader.is_alive() and self.p.poll() is not None):
                    tail = "".join(self.lines[-5:])
                    pytest.fail(f"no {pattern!r} (x{count}) from {self.argv[0]} "
                                f"(log {self.log_path}): ...{tail}")
                self.cond.wait(min(left, 0.5))

    def count(self, pattern: str) -> int:
        rx = re.compile(pattern)
        with self.cond:
            return sum(1 for line in self.lines if rx.search(line))

    def kill9(self) -> None:
        self.killed = True
        self.p.kill()
        self.p.wait()

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        """SIGTERM and the exit code (None when it had to be SIGKILLed)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return None
        finally:
            self.reader.join(5)


class Cluster:
    """A master and workers in one temp directory (see the module doc)."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.master: Optional[Proc] = None
        self.workers: List[Proc] = []
        self.retired: List[Proc] = []   # masters replaced by a restart
        self.api: Optional[str] = None
        self.clients: List[ztask.Client] = []

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def start_master(self, *args: str, port: int = 0, db: str = "master.db",
                     env: Optional[dict] = None) -> Proc:
        """Starts ztask-master on 127.0.0.1 (port 0: any free ports) and waits
        for its listening line; self.api is then "127.0.0.1:PORT"."""
        if self.master is not None:
            self.retired.append(self.master)
        argv = [os.path.join(BIN_DIR, "ztask-master"), "--db", self.path(db), "--port", str(port),
                "--bind", "127.0.0.1", *args]
        n = len(self.retired)
        self.master = Proc(argv, self.path(f"master{n or ''}.log"), env)
        m = self.master.wait_line(r"event=listening api=tcp://([0-9.]+:\d+)")
        self.api = m.group(1)
        return self.master

    def start_worker(self, name: str, threads: int = 2, *args: str) -> Proc:
        """Starts ztask-worker and waits until it has registered."""
        argv = [os.path.join(BIN_DIR, "ztask-worker"), "--master", self.api, "--threads",
                str(threads), "--name", name, *args]
        if os.geteuid() == 0:   # commands as root for a master without keys: told so
            argv.append("--allow-root")
        w = Proc(argv, self.path(f"worker-{name}.log"))
        self.workers.append(w)
        w.wait_line(r"event=registered")
        return w

    def client(self, **kwargs) -> ztask.Client:
        kwargs.setdefault("master", self.api)
        c = ztask.Client(**kwargs)
        self.clients.append(c)
        return c

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run([os.path.join(BIN_DIR, "ztask"), "--master", self.api, *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=scaled(timeout))

    def keygen(self, name: str, directory: Optional[str] = None) -> str:
        """`ztask keygen NAME --dir DIR`; returns DIR/NAME (add .key / .pub)."""
        directory = directory or self.dir
        os.makedirs(directory, exist_ok=True)
        subprocess.run([os.path.join(BIN_DIR, "ztask"), "keygen", name, "--dir", directory],
                       check=True, capture_output=True, timeout=30)
        return os.path.join(directory, name)

    def teardown(self) -> List[str]:
        """Stops everything; returns the problems found."""
        problems = []
        for c in self.clients:
            c.close()
        procs = self.workers + ([self.master] if self.master else [])
        for p in procs:
            rc = p.stop()
            if not p.killed and rc != 0:
                problems.append(f"{p.argv[0]} exited {rc} (log {p.log_path})")
        for p in procs + self.retired:
            hit = next((line for line in p.lines if SANITIZER.search(line)), None)
            if hit:
                problems.append(f"sanitizer report in {p.log_path}: {hit.strip()}")
        return problems


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(str(tmp_path))
    try:
        yield c
    finally:
        problems = c.teardown()
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def running(cluster):
    """A master and one worker with 4 threads."""
    cluster.start_master()
    cluster.start_worker("w1", 4)
    return cluster


def free_base_port() -> int:
    """A port P with P and P+1 free on 127.0.0.1, below the kernel's
    ephemeral range, so no client connection takes P+1 while a master
    restarts on P (tests/e2e/harness.c does the same)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo = int(f.read().split()[0])
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        port = rng.randrange(10000, lo - 2)
        try:
            for p in (port, port + 1):
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    pytest.fail(f"no free port pair below {lo}")


def unused_port() -> int:
    """A loopback port nobody listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_terminal_summary(terminalreporter):
    """The line every suite of this repository ends with (.ci/run sums them)."""
    stats = terminalreporter.stats
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    terminalreporter.write_line(f"python: {len(stats.get('passed', []))} passed, {failed} failed")
