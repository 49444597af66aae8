"""The admin dashboard: one HTML page whose script polls the stats and journal JSON."""

from __future__ import annotations

__all__ = ["DASHBOARD_HTML"]

DASHBOARD_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fakeforum dashboard</title>
<link rel="icon" href="data:,"><!-- no /favicon.ico request to count -->
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em} .tiles{display:flex;gap:1em;flex-wrap:wrap}
.tile{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;min-width:8em}
.tile b{display:block;font-size:1.6em}
table{border-collapse:collapse;margin-top:1em}
td,th{border-bottom:1px solid #eee;padding:.2em .6em;text-align:left}
td{font-variant-numeric:tabular-nums}
.err{color:#b00}
</style></head>
<body>
<h1>fakeforum</h1>
<p id="status">connecting…</p>
<div class="tiles">
 <div class="tile">requests/s<b id="rate">0</b></div>
 <div class="tile">requests<b id="requests">0</b></div>
 <div class="tile">in flight<b id="in_flight">0</b></div>
 <div class="tile">peak in flight<b id="peak_in_flight">0</b></div>
 <div class="tile">connections opened<b id="connections_opened">0</b></div>
</div>
<h2>Statuses and faults</h2><p id="by_status">none yet</p><p id="faults">no faults</p>
<h2>Routes</h2>
<table><thead><tr><th>route</th><th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th>
<th>max ms</th></tr></thead><tbody id="routes"></tbody></table>
<h2>Recent requests</h2>
<table><thead><tr><th>#</th><th>conn</th><th>request</th><th>status</th><th>delay ms</th>
<th>took ms</th><th>fault</th></tr></thead><tbody id="journal"></tbody></table>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const headers = token ? {"Authorization": "Bearer " + token} : {};
const base = location.pathname.replace(/\\/$/, "");
let last = null;
function text(id, value) { document.getElementById(id).textContent = value; }
function ms(seconds) { return (seconds * 1000).toFixed(1); }
function cell(row, value) { const td = row.insertCell(); td.textContent = value; }
async function poll() {
  try {
    const [stats, journal] = await Promise.all([
      fetch(base + "/stats", {headers}).then(r => r.json()),
      fetch(base + "/journal?limit=20", {headers}).then(r => r.json()),
    ]);
    const now = performance.now();
    if (last) {
      const rate = (stats.requests - last.requests) / ((now - last.at) / 1000);
      text("rate", Math.max(0, rate).toFixed(1));
    }
    last = {requests: stats.requests, at: now};
    for (const key of ["requests", "in_flight", "peak_in_flight", "connections_opened"]) {
      text(key, stats[key]);
    }
    const statuses = Object.entries(stats.by_status).map(([k, v]) => k + ": " + v);
    text("by_status", statuses.join(", ") || "none yet");
    const faults = Object.entries(stats.faults).map(([k, v]) => k + ": " + v);
    text("faults", faults.length ? "faults: " + faults.join(", ") : "no faults");
    const routes = document.getElementById("routes");
    routes.replaceChildren();
    for (const [route, r] of Object.entries(stats.by_route)) {
      const row = routes.insertRow();
      for (const v of [route, r.count, ms(r.p50), ms(r.p90), ms(r.p99), ms(r.max)]) cell(row, v);
    }
    const rows = document.getElementById("journal");
    rows.replaceChildren();
    for (const e of journal.entries.slice().reverse()) {
      const row = rows.insertRow();
      for (const v of [e.id, e.connection, e.method + " " + e.target,
                       e.status === null ? "-" : e.status, ms(e.delay), ms(e.end - e.start),
                       e.fault || ""]) cell(row, v);
    }
    text("status", "live, updated " + new Date().toLocaleTimeString());
    document.getElementById("status").className = "";
  } catch (error) {
    text("status", "cannot reach the server: " + error);
    document.getElementById("status").className = "err";
  }
}
poll();
setInterval(poll, 1000);
</script>
</body></html>
"""
