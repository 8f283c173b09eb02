#!/usr/bin/python3
"""The dashboard in a real browser: headless Chromium driven by
chromium-driver through python3-selenium (all Debian packages).

    tests/browser/test_dashboard.py BIN_DIR [OUT_DIR]

Starts a master with --http on loopback and two workers from BIN_DIR,
opens the dashboard, and checks, each step synchronised on what the page
shows (polled, never a fixed sleep): both workers appear alive; a job
submitted with the CLI shows its progress moving and then its final
counts; its failed tasks are listed under the "failed" filter, and a
failed task's stderr reads what the task wrote; a running task's output
grows live (as `ztask logs -f`); a worker killed with SIGKILL is shown
lost; with a token file, the page asks for the token and works once it is
given, and with a control token its Retry runs a job's failed tasks again. The browser's console holds no error at the end. Screenshots go to
OUT_DIR (default build/browser; not committed).

Prints "browser: N passed, N failed" last; exits 0 when all passed, 77
(with a SKIP line) when Chromium, its driver or selenium is missing.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
TIMEOUT = 30 * float(os.environ.get("ZTASK_TEST_SLOWDOWN", "1"))

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:
    webdriver = None


class Proc:
    """A daemon whose stderr is read by a thread, so a test can wait for a line."""

    def __init__(self, argv, log_path):
        self.lines = []
        self.cond = threading.Condition()
        self.log = open(log_path, "w", encoding="utf-8")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                  stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stderr:
            self.log.write(line)
            self.log.flush()
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    def wait_line(self, pattern, timeout=TIMEOUT):
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                left = end - time.monotonic()
                if left <= 0 or self.p.poll() is not None:
                    raise AssertionError(f"no line matching {pattern!r} in {self.log.name}")
                self.cond.wait(min(left, 0.5))

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


class Cluster:
    def __init__(self, bins, tmp, extra=()):
        self.bins, self.tmp = bins, tmp
        self.master = Proc([f"{bins}/ztask-master", "--db", f"{tmp}/master.db", "--port", "0",
                            "--http", "127.0.0.1:0", "--heartbeat-ms", "250", *extra],
                           f"{tmp}/master.log")
        self.url = self.master.wait_line(r"event=http_listening url=(\S+)").group(1)
        self.api = self.master.wait_line(r"event=listening api=tcp://([0-9.]+:[0-9]+)").group(1)
        self.workers = {}

    def worker(self, name, threads):
        argv = [f"{self.bins}/ztask-worker", "--master", self.api, "--threads", str(threads),
                "--name", name, "--state-dir", f"{self.tmp}/state"]
        if os.geteuid() == 0:   # a keyless master's commands run as root only when told
            argv.append("--allow-root")
        w = Proc(argv, f"{self.tmp}/{name}.log")
        w.wait_line(r"event=registered")
        self.workers[name] = w
        return w

    def cli(self, *args):
        r = subprocess.run([f"{self.bins}/ztask", "--master", self.api, *args], capture_output=True,
                           text=True, timeout=TIMEOUT, check=False)
        return r

    def submit(self, *args):
        r = self.cli("submit", "--json", *args)
        assert r.returncode == 0, f"submit: {r.returncode} {r.stderr}"
        return int(re.search(r'"job":\s*(\d+)', r.stdout).group(1))

    def stop(self):
        codes = [w.stop() for w in self.workers.values() if w.p.poll() is None]
        codes.append(self.master.stop())
        return codes


def until(what, cond, timeout=TIMEOUT):
    """Polls cond (a function) until it returns something true."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # the page may be mid-redraw: a stale element
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1800", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def click(d, css):
    """Clicks the first element css finds, once the page shows one (again
    when the page redrew it between the finding and the click)."""
    def go():
        found = d.find_elements(By.CSS_SELECTOR, css)
        if found:
            found[0].click()
            return True
        return False
    until(css, go)


def texts(d, css):
    """The texts of what css finds, [] while the page redraws."""
    try:
        return [e.text for e in d.find_elements(By.CSS_SELECTOR, css)]
    except Exception:  # a stale element: the caller polls
        return None


def cell(d, table, key, attr, css):
    rows = d.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr[data-{attr}='{key}'] {css}")
    return rows[0].text if rows else None


def console_errors(d):
    return [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]


# ---- the tests ----

def test_live_dashboard(bins, out, tmp):
    c = Cluster(bins, tmp)
    d = None
    try:
        c.worker("w1", 2)
        doomed = c.worker("w2", 1)
        d = browser()
        d.get(c.url)
        until("both workers alive", lambda: cell(d, "workers", "w1", "worker", ".state") == "alive"
              and cell(d, "workers", "w2", "worker", ".state") == "alive")
        d.save_screenshot(f"{out}/1-workers.png")

        # A job of 30 tasks, 3 of which fail with a message on stderr.
        job = c.submit("--array", "0-29", "--shell",
                       'sleep 0.3; if [ $((ZTASK_TASK_INDEX % 10)) = 3 ]; then '
                       'echo "boom at $ZTASK_TASK_INDEX" >&2; exit 3; fi; echo ok')
        done = lambda: int(cell(d, "jobs", job, "job", ".done") or -1)
        until("progress under way", lambda: 0 < done() < 27)
        d.save_screenshot(f"{out}/2-progress.png")
        until("a worker busy", lambda: (cell(d, "workers", "w1", "worker", ".busy") or "").startswith(("1", "2")))
        until("the job finished", lambda: done() == 27
              and cell(d, "jobs", job, "job", ".failed") == "3"
              and cell(d, "jobs", job, "job", ".eta") == "finished")

        # Its failed tasks, and one's stderr.
        click(d, f"#jobs tbody tr[data-job='{job}']")
        click(d, "input[name=filter][value=failed]")
        until("3 failed tasks listed", lambda: len(d.find_elements(
            By.CSS_SELECTOR, "#tasks tbody tr[data-state=failed]")) == 3
            and len(d.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")) == 3)
        # The error column says what `ztask results` says: the command's
        # first stderr line, not "exited with status 3".
        until("the error column shows each task's stderr",
              lambda: sorted(texts(d, "#tasks tbody tr td.wrap") or [])
              == ["boom at 13", "boom at 23", "boom at 3"])
        click(d, "#tasks tbody tr[data-state=failed]")
        until("its stderr", lambda: "boom at 3" in d.find_element(By.ID, "stderr").text)
        d.save_screenshot(f"{out}/3-failed-task.png")

        # A running task's output, live.
        job2 = c.submit("--shell", "for i in 1 2 3 4 5 6 7 8; do echo line$i; sleep 0.4; done")
        click(d, f"#jobs tbody tr[data-job='{job2}']")
        click(d, "input[name=filter][value=running]")
        click(d, "#tasks tbody tr[data-state=running]")
        until("live output while it runs", lambda: "line2" in d.find_element(By.ID, "stdout").text
              and "line8" not in d.find_element(By.ID, "stdout").text)
        d.save_screenshot(f"{out}/4-live-output.png")
        until("all of its output", lambda: "line8" in d.find_element(By.ID, "stdout").text)
        text = d.find_element(By.ID, "stdout").text
        assert text.count("line1") == 1, f"output repeated: {text!r}"

        # A worker killed is shown lost.
        doomed.stop(signal.SIGKILL)
        until("w2 lost", lambda: cell(d, "workers", "w2", "worker", ".state") == "lost")
        d.save_screenshot(f"{out}/5-worker-lost.png")
        errors = console_errors(d)
        assert not errors, f"console errors: {errors}"
    finally:
        if d:
            d.quit()
        codes = c.stop()
    assert all(code == 0 for code in codes), f"exit codes {codes} (logs in {tmp})"


def test_token_login(bins, out, tmp):
    token = "dashboard-token-0123456789"
    with open(f"{tmp}/tokens", "w", encoding="utf-8") as f:
        f.write(token + " control\n")
    c = Cluster(bins, tmp, ("--http-token", f"{tmp}/tokens"))
    d = None
    try:
        c.worker("w1", 1)
        d = browser()
        d.get(c.url)
        until("the token form", lambda: d.find_element(By.ID, "login").is_displayed())
        d.find_element(By.ID, "token").send_keys(token)
        d.find_element(By.CSS_SELECTOR, "#login-form button").click()
        until("the workers after login", lambda: cell(d, "workers", "w1", "worker", ".state") == "alive")
        d.save_screenshot(f"{out}/6-after-login.png")

        # Retry (a control token): a job whose 2 tasks fail the first time
        # runs them again from the dashboard and ends done.
        mark = f"{tmp}/second-try"
        job = c.submit("--array", "1-2", "--shell",
                       f'if [ -e {mark} ]; then echo ok; else echo "first try" >&2; exit 2; fi')
        retry = f"#jobs tbody tr[data-job='{job}'] button.retry"
        until("the job failed, with a retry button", lambda: cell(d, "jobs", job, "job", ".failed") == "2"
              and cell(d, "jobs", job, "job", ".eta") == "finished"
              and d.find_elements(By.CSS_SELECTOR, retry))
        until("a finished job offers no cancel",
              lambda: texts(d, f"#jobs tbody tr[data-job='{job}'] button.cancel") == [])
        open(mark, "w", encoding="utf-8").close()
        click(d, retry)
        until("the job ran again and is done", lambda: cell(d, "jobs", job, "job", ".done") == "2"
              and cell(d, "jobs", job, "job", ".failed") == "0"
              and cell(d, "jobs", job, "job", ".eta") == "finished")
        until("no retry with nothing failed", lambda: texts(d, retry) == [])
        d.save_screenshot(f"{out}/7-retried.png")
        # The 401s before the token was given are the only console errors.
        errors = [e for e in console_errors(d) if "401" not in e.get("message", "")]
        assert not errors, f"console errors: {errors}"
    finally:
        if d:
            d.quit()
        codes = c.stop()
    assert all(code == 0 for code in codes), f"exit codes {codes} (logs in {tmp})"


def main():
    bins = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/release/bin")
    out = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else "build/browser")
    missing = [p for p in (CHROMIUM, DRIVER) if not os.access(p, os.X_OK)]
    if webdriver is None:
        missing.append("python3-selenium")
    if missing:
        print(f"SKIP: browser tests: {', '.join(missing)} not installed "
              "(Debian: chromium chromium-driver python3-selenium)")
        return 77
    os.makedirs(out, exist_ok=True)
    passed = failed = 0
    for test in (test_live_dashboard, test_token_login):
        tmp = tempfile.mkdtemp(prefix=f"ztask-browser-{test.__name__}-")
        t0 = time.monotonic()
        try:
            test(bins, out, tmp)
            passed += 1
            print(f"ok   {test.__name__} ({time.monotonic() - t0:.1f}s)")
            subprocess.run(["rm", "-rf", tmp], check=False)
        except Exception as e:  # report and go on with the next test
            failed += 1
            print(f"FAIL {test.__name__}: {e} (logs in {tmp})")
    print(f"screenshots in {out}")
    print(f"browser: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
