// mlkube console: plain JavaScript, no build step. Data from /console/api (a session cookie),
// live updates from server-sent events, charts by uPlot (vendored beside this file).
"use strict";

const API = "/console/api";
const CHART_WINDOW_S = 3600; // the charts open on the last hour of the controller's history
const MAX_POINTS = 3 * 3600;
const $ = (id) => document.getElementById(id);

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell === null || cell === undefined ? "–" : String(cell);
    tr.appendChild(td);
  }
  return tr;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

class SignedOut extends Error {}

async function api(path, options) {
  const init = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  if (init.method === "POST") {
    init.headers["Content-Type"] = "application/json";
    init.headers["X-Mlkube-Console"] = "1";
  }
  const response = await fetch(API + path, init);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (response.status === 401) throw new SignedOut((body && body.error) || "not signed in");
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function post(path, data) {
  return api(path, { method: "POST", body: JSON.stringify(data) });
}

function show(id) {
  for (const section of ["signin", "overview", "deployment", "simulate"]) {
    $(section).hidden = section !== id;
  }
}

function setLive(text) { $("live").textContent = text; }

function fmtTime(ts) { return new Date(ts * 1000).toLocaleTimeString(); }
function fmtNum(v, digits) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }
function fmtBytes(v) {
  if (v === null || v === undefined) return "–";
  return (v / 2 ** 20).toFixed(0) + " MiB";
}

function healthBadge(health) {
  const symbol = { healthy: "● ", progressing: "◐ ", failing: "✖ " }[health] || "";
  return el("span", symbol + health, { class: `health health-${health}` });
}

// sign-in: the one-time code comes in the URL fragment, which no server ever sees ----------
async function signInFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const code = params.get("code");
  if (!code) return;
  history.replaceState(null, "", location.pathname + location.search); // out of the address bar
  try {
    await post("/session", { code });
  } catch (error) {
    $("signin-message").textContent = error.message;
    throw new SignedOut(error.message);
  }
}

// streams ------------------------------------------------------------------------------------
function openStream(query, onUpdate) {
  const source = new EventSource(`${API}/stream${query}`);
  source.addEventListener("update", (event) => {
    setLive("live · " + new Date().toLocaleTimeString());
    onUpdate(JSON.parse(event.data));
  });
  source.addEventListener("gone", () => { setLive("deployment is gone"); source.close(); });
  source.onerror = () => setLive("reconnecting…");
  return source;
}

// overview -------------------------------------------------------------------------------------
// The overview re-renders a table only when its rows change: a button keeps its focus.
const shown = { deployments: "", jobs: "" };
function renderOverview(data) {
  const deps = JSON.stringify(data.deployments);
  const jobs = JSON.stringify(data.jobs || []);
  if (deps !== shown.deployments) { shown.deployments = deps; renderDeployments(data); }
  if (jobs !== shown.jobs) { shown.jobs = jobs; renderJobs(data.jobs || []); }
}

function renderDeployments(data) {
  const rows = data.deployments.map((d) => {
    const link = el("a", `${d.namespace}/${d.name}`, { href: `/console/d/${d.namespace}/${d.name}` });
    return row([
      healthBadge(d.health), link, `${d.ready}/${d.desired}`, d.revision,
      d.rolloutPhase || "–", fmtNum(d.requestsPerSecond, 1), d.p99Ms, d.errors, d.lastEvent || "",
    ]);
  });
  fill($("deployments").tBodies[0], rows);
  $("no-deployments").hidden = data.deployments.length > 0;
}

function renderJobs(jobs) {
  fill($("jobs").tBodies[0], jobs.map((j) => {
    const key = `${j.namespace}/${j.name}`;
    let action = "";
    if (["Queued", "Pending", "Running"].includes(j.phase)) {
      action = el("button", "Cancel…", { type: "button", "aria-label": `Cancel job ${key}` });
      action.addEventListener("click", () => cancelJob(action, key));
    }
    return row([key, j.kind, j.phase, j.workers, fmtTime(j.submitted), j.reason || "", action]);
  }));
}

async function cancelJob(button, key) {
  if (!(await confirmAction("Cancel job", `Cancel job ${key}? Its workers are stopped.`))) return;
  button.disabled = true;
  const result = $("job-result");
  try {
    const job = await post("/cancel", { name: key });
    result.className = "";
    result.textContent = `Cancel job ${key}: ${job.phase}`;
  } catch (error) {
    result.className = "error";
    result.textContent = `Cancel job ${key} failed: ${error.message}`;
  }
}

async function overviewPage() {
  show("overview");
  renderOverview(await api("/overview"));
  openStream("", renderOverview);
}

// charts ---------------------------------------------------------------------------------------
function markersPlugin(getMarkers) {
  return {
    hooks: {
      draw: (u) => {
        const ctx = u.ctx;
        const [lo, hi] = [u.scales.x.min, u.scales.x.max];
        ctx.save();
        for (const marker of getMarkers()) {
          if (marker.ts < lo || marker.ts > hi) continue;
          const x = Math.round(u.valToPos(marker.ts, "x", true));
          ctx.strokeStyle = marker.reason === "AutoscalerDecision" ? "#b00020" : marker.reason === "ScalingReplicaSet" ? "#8a5300" : "#8a3ffc";
          ctx.setLineDash([4, 3]);
          ctx.lineWidth = 1.5;
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
        }
        ctx.restore();
      },
    },
  };
}

function makeChart(target, series, data, markers, time = true) {
  const width = Math.max(320, target.clientWidth || 600);
  const opts = {
    width, height: 200,
    series: [{}, ...series.map(([label, stroke, scale]) => ({ label, stroke, width: 2, scale: scale || "y", spanGaps: true }))],
    scales: { x: { time } },
    axes: [time ? { space: 90, values: (u, ticks) => ticks.map((t) => fmtTime(t)) } : {}, { scale: "y", size: 64 }],
    legend: { live: false },
    plugins: markers ? [markersPlugin(markers)] : [],
  };
  return new uPlot(opts, data, target);
}

const dep = { key: "", columns: [], rows: [], markers: [], charts: [], status: null, events: [] };

function columnsOf(rows, names) {
  const index = (n) => dep.columns.indexOf(n);
  return [rows.map((r) => r[0]), ...names.map((n) => rows.map((r) => r[index(n)]))];
}

const CHARTS = [
  ["chart-traffic", [["req/s", "#0b4f9c", "rps"], ["errors/s", "#b00020", "errorsPerSecond"]]],
  ["chart-latency", [["p50 ms", "#1b6e1b", "p50Ms"], ["p99 ms", "#8a3ffc", "p99Ms"]]],
  ["chart-replicas", [["desired", "#8a5300", "desired"], ["ready", "#0b4f9c", "ready"],
    ["in flight", "#1b6e1b", "inFlight"], ["queue", "#b00020", "queueDepth"],
    ["batch size", "#8a3ffc", "batchSize"]]],
];

function drawCharts() {
  if (dep.charts.length === 0) {
    dep.charts = CHARTS.map(([id, series]) => makeChart(
      $(id), series.map(([l, c]) => [l, c]), columnsOf(dep.rows, series.map((s) => s[2])), () => dep.markers));
  } else {
    CHARTS.forEach(([, series], i) => dep.charts[i].setData(columnsOf(dep.rows, series.map((s) => s[2]))));
  }
}

// Why the replica count or the serving revision changed: drawn on the charts' timeline.
const MARKER_PREFIXES = ["Autoscaler", "ScalingReplicaSet", "Rollout", "Canary", "RolledBack"];
function isMarker(e) {
  return e.reason !== "AutoscalerActive" && MARKER_PREFIXES.some((p) => e.reason.startsWith(p));
}

// deployment page ------------------------------------------------------------------------------
function renderStatus(s, health) {
  dep.status = s;
  $("dep-title").textContent = `${s.namespace}/${s.name}`;
  $("dep-health").replaceChildren(healthBadge(health));
  $("dep-replicas").textContent = `${s.ready} ready of ${s.desired}`;
  $("dep-revision").textContent = String(s.revision);
  $("dep-endpoint").textContent = `127.0.0.1:${s.port}`;
  if (document.activeElement !== $("scale-to") && $("scale-to").value === "") $("scale-to").value = s.desired;
  const rollout = s.rollout || {};
  const active = ["Progressing", "ABTest"].includes(rollout.phase) && rollout.target !== null;
  $("promote").disabled = !active;
  $("abort").disabled = !active;
  let step = `phase ${rollout.phase || "–"}, stable revision ${rollout.stable ?? "–"}`;
  if (rollout.target) step += `, target revision ${rollout.target}`;
  if (active) step += `, ${rollout.strategy} step ${rollout.step + 1}`;
  if (rollout.reason) step += ` (${rollout.reason})`;
  $("rollout-step").textContent = step;
  const weights = Object.entries(s.traffic || {});
  $("weights").setAttribute("aria-label", "Traffic weights: " + (weights.map(([r, w]) => `revision ${r} ${w}%`).join(", ") || "none"));
  $("weights").replaceChildren(...weights.filter(([, w]) => w > 0).map(([r, w], i) => {
    const span = el("span", `rev ${r}: ${w}%`, { class: `w${i % 3}` });
    span.style.width = `${w}%`;
    return span;
  }));
  const requests = s.requests || {};
  const limits = s.limits || {};
  const cpuOf = (r) => `${fmtNum(r.cpuCores, 2)} (req ${requests.cpu || "–"}, lim ${limits.cpu || "–"})`;
  const memOf = (r) => `${fmtBytes(r.memoryBytes)} (req ${requests.memory || "–"}, lim ${limits.memory || "–"})`;
  fill($("replicas").tBodies[0], s.replicas.map((r) => row([
    r.name, r.revision, r.phase, r.restarts, r.lastReason || r.pendingReason || "", cpuOf(r), memOf(r), r.inFlight,
  ])));
}

function renderEvents() {
  fill($("events").tBodies[0], dep.events.slice().reverse().slice(0, 200).map((e) => row([fmtTime(e.ts), e.type, e.reason, e.message])));
  dep.markers = dep.events.filter(isMarker);
  fill($("decisions"), dep.markers.slice().reverse().map((m) => el("li", `${fmtTime(m.ts)} · ${m.reason}: ${m.message}`)));
}

function renderRevisions(history) {
  fill($("revisions").tBodies[0], history.map((h) => row([
    h.current ? `${h.revision} (current)` : h.revision, fmtTime(h.created), h.status, h.change, h.reason,
  ])));
}

async function refreshLogs() {
  try {
    const data = await api(`/logs?name=${encodeURIComponent(dep.key)}&lines=100`);
    const box = $("logs");
    const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 5;
    box.textContent = data.lines.join("\n") || "(no log lines yet)";
    if (atEnd) box.scrollTop = box.scrollHeight;
  } catch (error) { /* the next poll tries again */ }
}

async function deploymentPage(namespace, name) {
  show("deployment");
  dep.key = `${namespace}/${name}`;
  const since = Date.now() / 1000 - CHART_WINDOW_S;
  const data = await api(`/deployment?name=${encodeURIComponent(dep.key)}&since=${since}`);
  dep.columns = data.columns;
  dep.rows = data.points;
  dep.events = data.events;
  renderStatus(data.status, data.health);
  renderRevisions(data.history);
  renderEvents();
  drawCharts();
  refreshLogs();
  setInterval(refreshLogs, 2000);
  let revisionsSeen = data.status.revision;
  openStream(`?name=${encodeURIComponent(dep.key)}`, async (update) => {
    renderStatus(update.status, update.health);
    if (update.point && (dep.rows.length === 0 || update.point[0] > dep.rows[dep.rows.length - 1][0])) {
      dep.rows.push(update.point);
      if (dep.rows.length > MAX_POINTS) dep.rows.shift();
    }
    if (update.events.length) {
      const seen = new Set(dep.events.map((e) => `${e.ts}|${e.reason}|${e.message}`));
      for (const e of update.events) if (!seen.has(`${e.ts}|${e.reason}|${e.message}`)) dep.events.push(e);
      renderEvents();
    }
    drawCharts();
    if (update.status.revision !== revisionsSeen || update.events.length) {
      revisionsSeen = update.status.revision;
      renderRevisions((await api(`/deployment?name=${encodeURIComponent(dep.key)}&since=${Date.now() / 1000}`)).history);
    }
  });
  wireActions();
}

// confirmed actions --------------------------------------------------------------------------
function confirmAction(title, text) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

async function act(button, title, text, path, body) {
  if (!(await confirmAction(title, text))) return;
  button.disabled = true;
  const result = $("action-result");
  try {
    await post(path, body);
    result.className = "";
    result.textContent = `${title}: done`;
  } catch (error) {
    result.className = "error";
    result.textContent = `${title} failed: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

function wireActions() {
  $("scale").addEventListener("click", () => {
    const replicas = Number($("scale-to").value);
    if (!Number.isInteger(replicas) || replicas < 0) {
      $("action-result").className = "error";
      $("action-result").textContent = "Replicas must be a whole number, 0 or more.";
      return;
    }
    act($("scale"), "Scale", `Scale ${dep.key} from ${dep.status.desired} to ${replicas} replicas?`, "/scale", { name: dep.key, replicas });
  });
  $("undo").addEventListener("click", () => act($("undo"), "Roll back", `Roll ${dep.key} back to its previous revision?`, "/undo", { name: dep.key }));
  $("promote").addEventListener("click", () => act($("promote"), "Promote canary", `Promote the canary of ${dep.key} to its next step?`, "/promote", { name: dep.key }));
  $("abort").addEventListener("click", () => act($("abort"), "Abort canary", `Abort the canary of ${dep.key} and send all traffic back to the stable revision?`, "/abort", { name: dep.key }));
}

// simulate -------------------------------------------------------------------------------------
const simCharts = [];
async function simulatePage() {
  show("simulate");
  setLive("signed in");
  const overview = await api("/overview");
  fill($("sim-name"), overview.deployments.map((d) => el("option", `${d.namespace}/${d.name}`)));
  $("sim-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const policies = [...document.querySelectorAll("input[name=policy]:checked")].map((i) => i.value);
    $("sim-status").textContent = "Simulating…";
    $("sim-run").disabled = true;
    try {
      const result = await post("/simulate", { name: $("sim-name").value, trace: $("sim-trace").value, policies });
      renderSimulation(result);
      $("sim-status").textContent = `Done: ${result.results.length} policies.`;
    } catch (error) {
      $("sim-status").textContent = `Simulation failed: ${error.message}`;
    } finally {
      $("sim-run").disabled = false;
    }
  });
}

const SIM_COLORS = ["#0b4f9c", "#b00020", "#1b6e1b", "#8a3ffc", "#8a5300"];
function renderSimulation(result) {
  $("sim-title").textContent = result.title;
  fill($("sim-table").tBodies[0], result.results.map((r) => {
    const s = r.summary;
    return row([s.policy, s.secondsOverSlo, fmtNum(s.replicaSeconds, 0), s.maxReplicas, fmtNum(s.meanReplicas, 2), s.p99OfP95Ms, s.scaleChanges]);
  }));
  while (simCharts.length) simCharts.pop().destroy();
  const t = result.results[0].t;
  const series = result.results.map((r, i) => [r.summary.policy, SIM_COLORS[i % SIM_COLORS.length]]);
  // The simulator's clock starts at 0: its x axis is seconds, not a date.
  simCharts.push(makeChart($("sim-rate"), [["req/s", "#0b4f9c"]], [t, result.results[0].rate], null, false));
  simCharts.push(makeChart($("sim-replicas"), series, [t, ...result.results.map((r) => r.replicas)], null, false));
  simCharts.push(makeChart($("sim-latency"), series, [t, ...result.results.map((r) => r.p95Ms)], null, false));
}

// routing --------------------------------------------------------------------------------------
async function main() {
  try {
    await signInFromFragment();
    const path = location.pathname.replace(/\/+$/, "");
    const match = path.match(/^\/console\/d\/([^/]+)\/([^/]+)$/);
    if (match) await deploymentPage(decodeURIComponent(match[1]), decodeURIComponent(match[2]));
    else if (path === "/console/simulate") await simulatePage();
    else await overviewPage();
  } catch (error) {
    if (error instanceof SignedOut) {
      show("signin");
      setLive("signed out");
    } else {
      setLive("error: " + error.message);
    }
  }
}

main();
