// netward status page: plain DOM, no framework. Data comes from /api/*
// (the user's token rides in an HttpOnly cookie); changes arrive over
// server-sent events (/api/events) and reload only the parts they touch.
"use strict";

const $ = (id) => document.getElementById(id);
const show = (el, on) => el.classList.toggle("hidden", !on);

// What tests and people can read off the page's state.
const netward = { live: false, events: 0, lastEvent: null };
window.netward = netward;

let openSite = null;
let source = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  let body = {};
  try { body = await response.json(); } catch (_) { /* an empty body */ }
  if (!response.ok) {
    const error = new Error(body.error || response.status + " " + response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function post(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
}

function message(text) {
  $("message").textContent = text;
  show($("message"), !!text);
  if (text) setTimeout(() => { if ($("message").textContent === text) message(""); }, 10000);
}

function since(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 120) return seconds + " s ago";
  if (seconds < 7200) return Math.round(seconds / 60) + " min ago";
  if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
  return Math.round(seconds / 86400) + " d ago";
}

function rtt(us) {
  if (us === null || us === undefined) return "";
  return us < 1000 ? us + " µs" : (us / 1000).toFixed(1) + " ms";
}

function badge(state) {
  return el("span", { class: "badge state-" + state }, state);
}

// Redraws are batched: a burst of events costs one request per part.
const pending = new Set();
let flushTimer = null;
function schedule(part) {
  pending.add(part);
  if (!flushTimer) flushTimer = setTimeout(flush, 250);
}
function flush() {
  flushTimer = null;
  const parts = [...pending];
  pending.clear();
  for (const part of parts) {
    ({ summary: loadSummary, alerts: loadAlerts, cycles: loadCycles, site: loadSite })[part]();
  }
}

async function loadSummary() {
  try {
    renderSummary(await api("/api/summary"));
  } catch (error) {
    failed(error, "summary");
  }
}

function renderSummary(s) {
  const t = s.totals;
  $("totals").textContent = `${t.total} devices · ${t.up} up · ${t.down} down · ` +
    `${t.flapping + t.unreachable} flapping/unreachable · ${t.unknown} unknown · ${t.maintenance} in maintenance`;
  // Blind spots first: netward's own gaps, stale devices, an unsynced copy.
  show($("sync"), !s.inventory_synced);
  const gaps = $("gaps");
  gaps.replaceChildren(...s.gap_alerts.map((a) =>
    el("li", { "data-alert-id": a.id }, el("strong", {}, "monitoring gap: "), a.summary || a.device_name,
      " (since ", since(a.started_at), ")")));
  const stale = $("stale");
  if (s.totals.stale > 0) {
    const names = s.stale_devices.map((d) => d.name).join(", ");
    const more = s.totals.stale > s.stale_devices.length ? ` and ${s.totals.stale - s.stale_devices.length} more` : "";
    stale.replaceChildren(el("strong", {}, `${s.totals.stale} stale devices: `), names + more);
  } else {
    stale.replaceChildren();
  }
  show($("blind"), !s.inventory_synced || s.gap_alerts.length > 0 || s.totals.stale > 0);

  const byRegion = new Map();
  for (const site of s.sites) {
    if (!byRegion.has(site.region)) byRegion.set(site.region, []);
    byRegion.get(site.region).push(site);
  }
  const rank = { DOWN: 0, FLAPPING: 1, UNREACHABLE: 2, UNKNOWN: 3, UP: 4 };
  const regions = [];
  for (const [region, sites] of byRegion) {
    const worst = sites.reduce((w, site) => (rank[site.worst] < rank[w] ? site.worst : w), "UP");
    const sum = (key) => sites.reduce((n, site) => n + site.counts[key], 0);
    const tiles = sites.map((site) => {
      const c = site.counts;
      const tile = el("div", {
          class: "tile state-" + site.worst + (site.site_id === openSite?.id ? " open" : ""),
          "data-site-id": site.site_id, "data-site-name": site.site_name, "data-state": site.worst,
          title: `${site.site_name}: ${c.total} devices`,
        },
        el("div", { class: "name" }, site.site_name),
        el("div", { class: "counts" }, `${c.up}/${c.total} up`,
          c.down ? ` · ${c.down} down` : "", c.flapping ? ` · ${c.flapping} flapping` : "",
          c.unreachable ? ` · ${c.unreachable} unreachable` : "", c.unknown ? ` · ${c.unknown} unknown` : ""),
        c.maintenance ? el("span", { class: "maint" }, `🔧 ${c.maintenance} in maintenance`) : null);
      tile.addEventListener("click", () => openSiteOf(site));
      return tile;
    });
    regions.push(el("div", { class: "region", "data-region": region },
      el("h3", {}, badge(worst), " ", region || "(no region)",
        ` — ${sum("total")} devices, ${sum("down")} down`),
      el("div", { class: "tiles" }, ...tiles)));
  }
  $("regions").replaceChildren(...regions);
}

function openSiteOf(site) {
  openSite = { id: site.site_id, name: site.site_name };
  $("site-name").textContent = site.site_name;
  for (const tile of document.querySelectorAll(".tile")) {
    tile.classList.toggle("open", tile.dataset.siteId === site.site_id);
  }
  show($("site"), true);
  loadSite();
}

async function loadSite() {
  if (!openSite) return;
  const site = openSite;
  try {
    const listed = await api(`/api/sites/${encodeURIComponent(site.id)}/devices`);
    if (openSite !== site) return;
    $("devices").replaceChildren(...listed.devices.map((d, i) => {
      const spark = el("td", { class: "spark" });
      // Sparklines for the first 100 devices: one history request each.
      if (i < 100) loadSpark(d.id, spark);
      return el("tr", { "data-device-id": d.id, "data-state": d.state },
        el("td", {}, d.name), el("td", {}, d.ip),
        el("td", {}, badge(d.state), d.maintenance ? " 🔧" : "", d.stale ? " (stale)" : ""),
        el("td", { title: d.since || "" }, since(d.since)), el("td", {}, d.reason),
        el("td", { class: "num" }, rtt(d.rtt_us)),
        el("td", { class: "num" }, d.loss_percent === null ? "" : d.loss_percent.toFixed(0) + " %"),
        spark);
    }));
  } catch (error) {
    failed(error, "site");
  }
}

async function loadSpark(deviceId, cell) {
  try {
    const history = await api(`/api/devices/${encodeURIComponent(deviceId)}/history`);
    cell.replaceChildren(sparkline(history.points));
  } catch (_) {
    cell.textContent = "–";
  }
}

// RTT as a line, loss as red bars from the bottom, over the last hour.
function sparkline(points) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 24");
  if (points.length === 0) return svg;
  const rtts = points.map((p) => p.rtt_us).filter((v) => v !== null);
  const max = Math.max(1, ...rtts);
  const x = (i) => (points.length === 1 ? 60 : (i * 120) / (points.length - 1));
  const line = [];
  points.forEach((p, i) => {
    if (p.rtt_us !== null) line.push(`${x(i).toFixed(1)},${(22 - (p.rtt_us / max) * 20).toFixed(1)}`);
    if (p.loss_percent > 0) {
      const bar = document.createElementNS(ns, "rect");
      const h = Math.max(2, (p.loss_percent / 100) * 24);
      bar.setAttribute("class", "loss");
      bar.setAttribute("x", Math.max(0, x(i) - 1).toFixed(1));
      bar.setAttribute("y", (24 - h).toFixed(1));
      bar.setAttribute("width", "2");
      bar.setAttribute("height", h.toFixed(1));
      svg.append(bar);
    }
  });
  const polyline = document.createElementNS(ns, "polyline");
  polyline.setAttribute("points", line.join(" "));
  svg.append(polyline);
  return svg;
}

async function loadAlerts() {
  try {
    const listed = await api("/api/alerts");
    $("alert-count").textContent = listed.total_count;
    $("alerts").replaceChildren(...listed.alerts.map((a) => {
      const ack = el("button", { class: "ack", type: "button", "data-alert-id": a.id },
        a.state === "ACKNOWLEDGED" ? "re-ack" : "Acknowledge");
      ack.addEventListener("click", () => acknowledge(a, ack));
      return el("tr", { "data-alert-id": a.id, "data-state": a.state, "data-device-id": a.device_id },
        el("td", {}, a.severity), el("td", {}, a.state,
          a.acknowledged_by ? ` by ${a.acknowledged_by}` : "", a.suppressed ? " (muted)" : ""),
        el("td", {}, a.summary || `${a.rule_name}: ${a.device_name}`),
        el("td", {}, [a.region, a.site_name].filter(Boolean).join(" / ")),
        el("td", { title: a.started_at || "" }, since(a.started_at)), el("td", {}, ack));
    }));
  } catch (error) {
    failed(error, "alerts");
  }
}

async function acknowledge(alert, button) {
  button.disabled = true;
  try {
    await post(`/api/alerts/${encodeURIComponent(alert.id)}/ack`, { comment: "" });
    message("");
    loadAlerts();
  } catch (error) {
    button.disabled = false;
    message(`cannot acknowledge ${alert.summary || alert.id}: ${error.message}`);
  }
}

async function loadCycles() {
  try {
    const listed = await api("/api/cycles");
    show($("planner-error"), false);
    renderCycles(listed.cycles);
  } catch (error) {
    if (error.status === 401) return failed(error, "cycles");
    $("planner-error").textContent = error.message;
    show($("planner-error"), true);
  }
}

function renderCycles(cycles) {
  $("cycles").replaceChildren(...cycles.map((c) => el("tr", { "data-cycle-id": c.cycle_id },
    el("td", { class: "num" }, c.cycle_id), el("td", { title: c.started_at || "" }, since(c.started_at)),
    el("td", { class: "num" }, c.device_count),
    el("td", { class: "num" }, `${c.done_batches}/${c.batch_count} × ${c.batch_size}`),
    el("td", { class: "num" }, c.succeeded + c.failed), el("td", { class: "num" }, c.failed),
    el("td", { class: "num" }, c.skipped), el("td", { class: "num" }, c.overruns),
    el("td", { class: "num" }, c.unserved),
    el("td", { class: "num" }, c.completed ? c.duration_ms + " ms" : "running"))));
}

function failed(error, what) {
  if (error.status === 401) {
    showLogin("your token was refused: " + error.message);
  } else {
    message(`${what}: ${error.message}`);
  }
}

function setLive(on) {
  netward.live = on;
  const live = $("live");
  live.dataset.live = on ? "on" : "lost";
  live.textContent = on ? "live" : "reconnecting…";
  show($("lost"), !on);
}

function connect() {
  if (source) source.close();
  source = new EventSource("/api/events");
  const seen = (event) => { netward.events += 1; netward.lastEvent = event.type; };
  source.addEventListener("hello", (event) => {
    seen(event);
    setLive(true);
    // Whatever changed while the stream was down.
    for (const part of ["summary", "alerts", "cycles", "site"]) schedule(part);
  });
  source.addEventListener("state", (event) => {
    seen(event);
    const change = JSON.parse(event.data);
    schedule("summary");
    if (openSite && openSite.id === change.site_id) schedule("site");
  });
  source.addEventListener("alert", (event) => {
    seen(event);
    schedule("alerts");
    schedule("summary");
  });
  source.addEventListener("cycle", (event) => { seen(event); schedule("cycles"); });
  source.addEventListener("planner", (event) => {
    seen(event);
    const planner = JSON.parse(event.data);
    if (planner.ok) {
      schedule("cycles");
    } else {
      $("planner-error").textContent = `planner ${planner.url} unreachable: ${planner.error}`;
      show($("planner-error"), true);
    }
  });
  source.onerror = () => {
    setLive(false);
    // A refused stream is not retried by the browser itself.
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
  };
}

function showLogin(text) {
  if (source) source.close();
  show($("main"), false);
  show($("login"), true);
  $("login-error").textContent = text || "";
  $("token").focus();
}

async function start() {
  const session = await api("/api/session");
  show($("logout"), session.auth);
  if (session.auth && !session.caller) return showLogin("");
  if (session.caller) {
    $("who").textContent = `${session.caller.name} (${session.caller.role}, ${session.caller.scope})`;
  }
  show($("login"), false);
  show($("main"), true);
  connect();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await post("/api/login", { token: $("token").value });
    $("token").value = "";
    start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});
$("logout").addEventListener("click", async () => {
  await post("/api/logout");
  showLogin("logged out");
});
$("site-close").addEventListener("click", () => {
  openSite = null;
  show($("site"), false);
  for (const tile of document.querySelectorAll(".tile.open")) tile.classList.remove("open");
});
start().catch((error) => message("cannot start: " + error.message));
