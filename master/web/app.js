// ztask dashboard: polls the master's JSON (docs/metrics.md) every second
// and redraws. No framework, no build step, no inline script (the CSP
// forbids it); every value from the master goes into the page as text
// (textContent), never as HTML.
"use strict";

const POLL_MS = 1000;
const PAGE = 50;

const state = {
  token: sessionStorage.getItem("ztask-token") || "",
  control: false,
  job: null,          // the job whose tasks are shown
  filter: "all",
  after: 0,           // the page's cursor
  nextAfter: -1,
  task: null,         // the task whose details are shown
  taskOut: 0,         // output offsets already shown (live output)
  taskErr: 0,
  taskLive: false,
  busy: false,
};

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

class AuthError extends Error {}

async function api(path, method) {
  const headers = {};
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const r = await fetch(path, { method: method || "GET", headers, cache: "no-store" });
  if (r.status === 401) throw new AuthError("token needed");
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
  return body;
}

function fmtSecs(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  s = Math.round(s);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function setStatus(text, bad) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("bad", !!bad);
}

function showMessage(text) {
  const m = $("message");
  m.textContent = text || "";
  m.hidden = !text;
}

// ---- overview and chart ----

function drawChart(series) {
  const c = $("chart");
  const ctx = c.getContext("2d");
  const w = c.width, h = c.height, n = series.done.length;
  ctx.clearRect(0, 0, w, h);
  let max = 1;
  for (let i = 0; i < n; i++) max = Math.max(max, series.done[i] + series.failed[i]);
  const bw = w / n;
  for (let i = 0; i < n; i++) {
    const d = (series.done[i] / max) * (h - 16), f = (series.failed[i] / max) * (h - 16);
    ctx.fillStyle = "#2f9e44";
    ctx.fillRect(i * bw, h - d, Math.max(bw - 1, 1), d);
    ctx.fillStyle = "#d6336c";
    ctx.fillRect(i * bw, h - d - f, Math.max(bw - 1, 1), f);
  }
  ctx.fillStyle = "#667";
  ctx.font = "11px sans-serif";
  ctx.fillText("max " + max + "/s", 4, 12);
}

function renderOverview(o) {
  $("version").textContent = o.version;
  $("t-queued").textContent = o.tasks.queued + o.tasks.retry_wait;
  $("t-waiting").textContent = o.tasks.held + o.tasks.dep_wait + o.tasks.capped;
  $("t-running").textContent = o.tasks.assigned + o.tasks.running;
  $("t-done").textContent = o.totals.done;
  $("t-failed").textContent = o.totals.failed;
  $("t-uptime").textContent = fmtSecs(o.uptime);
  state.control = !!o.control;
  drawChart(o.series);
}

// ---- jobs ----

function renderJobs(list) {
  const body = $("jobs").tBodies[0];
  body.replaceChildren();
  for (const j of list.jobs) {
    const tr = el("tr", null, "clickable");
    tr.dataset.job = j.id;
    if (state.job === j.id) tr.classList.add("selected");
    tr.append(el("td", j.id, "num"), el("td", j.name));
    const p = el("td");
    const bar = document.createElement("progress");
    bar.max = Math.max(j.total, 1);
    bar.value = j.done + j.failed + j.cancelled;
    p.append(bar, el("span", " " + (j.done + j.failed + j.cancelled) + "/" + j.total));
    tr.append(p, el("td", j.done, "num done"), el("td", j.failed, "num failed"),
      el("td", j.running, "num running"), el("td", j.queued, "num queued"),
      el("td", j.rate.toFixed(1) + "/s", "num"), el("td", j.finished ? "finished" : fmtSecs(j.eta), "eta"));
    const act = el("td");
    if (state.control && !j.finished) {
      const b = el("button", "cancel", "cancel");
      b.type = "button";
      b.addEventListener("click", (ev) => { ev.stopPropagation(); cancel("job=" + j.id); });
      act.append(b);
    }
    // As `ztask retry JOB`: its failed and cancelled tasks (and those that
    // never ran because a job it depends on failed) run again.
    if (state.control && j.failed + j.cancelled + j.dep_failed > 0) {
      const b = el("button", "retry", "retry");
      b.type = "button";
      b.addEventListener("click", (ev) => { ev.stopPropagation(); retry(j.id); });
      act.append(b);
    }
    tr.append(act);
    tr.addEventListener("click", () => openJob(j.id, j.name));
    body.append(tr);
  }
}

// ---- workers ----

function renderWorkers(list, now) {
  const body = $("workers").tBodies[0];
  body.replaceChildren();
  let alive = 0;
  for (const w of list.workers) {
    if (w.state === "alive") alive++;
    const tr = el("tr");
    tr.dataset.worker = w.id;
    const ago = w.last_heartbeat > 0 ? fmtSecs(now - w.last_heartbeat) + " ago" : "–";
    tr.append(el("td", w.id), el("td", w.host), el("td", w.labels.join(", ")),
      el("td", w.busy + " / " + w.slots, "num busy"), el("td", ago),
      el("td", w.done, "num"), el("td", w.failed, "num"),
      el("td", w.state, "state state-" + w.state));
    body.append(tr);
  }
  $("t-workers").textContent = alive;
}

// ---- a job's tasks ----

function openJob(id, name) {
  if (state.job !== id) {
    state.after = 0;
    closeTask();
  }
  state.job = id;
  $("job-id").textContent = id;
  $("job-name").textContent = name || "";
  $("job-view").hidden = false;
  refreshTasks();
}

async function refreshTasks() {
  if (state.job === null) return;
  const q = "/api/tasks?job=" + state.job + "&filter=" + state.filter + "&limit=" + PAGE +
    (state.after ? "&after=" + state.after : "");
  const page = await api(q);
  state.nextAfter = page.next_after;
  const body = $("tasks").tBodies[0];
  body.replaceChildren();
  for (const t of page.tasks) {
    const tr = el("tr", null, "clickable");
    tr.dataset.task = t.id;
    tr.dataset.state = t.state;
    tr.append(el("td", t.id, "num"), el("td", t.index === undefined ? "" : t.index, "num"),
      el("td", t.state, "state state-" + t.state), el("td", t.attempt, "num"),
      el("td", t.worker), el("td", t.exit_code === undefined ? "" : t.exit_code, "num"),
      el("td", t.error || "", "wrap"));
    tr.addEventListener("click", () => openTask(t.id));
    body.append(tr);
  }
  $("next-page").disabled = state.nextAfter < 0;
  $("prev-page").disabled = state.after === 0;
}

// ---- one task ----

function closeTask() {
  state.task = null;
  $("task-view").hidden = true;
}

async function openTask(id) {
  state.task = id;
  state.taskOut = 0;
  state.taskErr = 0;
  $("stdout").textContent = "";
  $("stderr").textContent = "";
  $("task-id").textContent = id;
  $("task-view").hidden = false;
  await refreshTask();
}

async function refreshTask() {
  if (state.task === null) return;
  const id = state.task;
  const t = await api("/api/task?id=" + id + "&out=" + state.taskOut + "&err=" + state.taskErr);
  if (state.task !== id) return;
  const facts = $("task-facts");
  facts.replaceChildren();
  const add = (k, v) => { if (v !== undefined && v !== null && v !== "") facts.append(el("dt", k), el("dd", v)); };
  add("job", t.job);
  add("index", t.index);
  add("state", t.state);
  add("attempt", t.attempt);
  add("worker", t.worker);
  add("exit code", t.exit_code);
  add("signal", t.signal);
  add("timed out", t.timed_out ? "yes" : undefined);
  add("error", t.error);
  add("started", t.started > 0 ? new Date(t.started * 1000).toLocaleString() : undefined);
  add("finished", t.finished > 0 ? new Date(t.finished * 1000).toLocaleString() : undefined);
  if (t.result !== undefined) add("result", JSON.stringify(t.result));
  $("task-spec").textContent = JSON.stringify(t.spec, null, 2);
  // Output arrives as chunks from the offsets already shown (as logs -f).
  if (t.stdout) $("stdout").append(document.createTextNode(t.stdout));
  if (t.stderr) $("stderr").append(document.createTextNode(t.stderr));
  state.taskOut = t.stdout_next;
  state.taskErr = t.stderr_next;
  state.taskLive = t.live;
  const cancelBtn = $("cancel-task");
  cancelBtn.hidden = !(state.control && t.live);
}

async function cancel(what) {
  try {
    const r = await api("/api/cancel?" + what, "POST");
    showMessage("cancelled " + r.cancelled + " task(s)");
  } catch (e) {
    showMessage("cancel: " + e.message);
  }
}

async function retry(job) {
  try {
    const r = await api("/api/retry?job=" + job, "POST");
    showMessage("retrying " + r.retried + " task(s) of job " + job);
  } catch (e) {
    showMessage("retry: " + e.message);
  }
}

// ---- the loop ----

async function tick() {
  if (state.busy) return;
  state.busy = true;
  try {
    const [o, jobs, workers] = await Promise.all([
      api("/api/overview"), api("/api/jobs?limit=50"), api("/api/workers")]);
    renderOverview(o);
    renderJobs(jobs);
    renderWorkers(workers, o.now);
    await refreshTasks();
    if (state.task !== null && (state.taskLive || $("task-facts").childElementCount === 0))
      await refreshTask();
    setStatus("live · updated " + new Date().toLocaleTimeString());
    $("login").hidden = true;
    $("main").hidden = false;
  } catch (e) {
    if (e instanceof AuthError) {
      $("login").hidden = false;
      $("main").hidden = true;
      setStatus("token needed", true);
    } else {
      setStatus("master unreachable: " + e.message, true);
    }
  } finally {
    state.busy = false;
  }
}

function init() {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("ztask-token", state.token);
    tick();
  });
  for (const r of document.querySelectorAll("input[name=filter]")) {
    r.addEventListener("change", () => {
      state.filter = r.value;
      state.after = 0;
      refreshTasks().catch((e) => showMessage(e.message));
    });
  }
  $("next-page").addEventListener("click", () => {
    if (state.nextAfter >= 0) {
      state.after = state.nextAfter;
      refreshTasks().catch((e) => showMessage(e.message));
    }
  });
  $("prev-page").addEventListener("click", () => {
    state.after = 0;
    refreshTasks().catch((e) => showMessage(e.message));
  });
  $("close-job").addEventListener("click", () => {
    state.job = null;
    $("job-view").hidden = true;
    closeTask();
  });
  $("close-task").addEventListener("click", closeTask);
  $("cancel-task").addEventListener("click", () => { if (state.task !== null) cancel("task=" + state.task); });
  tick();
  setInterval(tick, POLL_MS);
}

document.addEventListener("DOMContentLoaded", init);
