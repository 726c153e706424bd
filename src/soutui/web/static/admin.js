// soutui admin dashboard: manifest, evaluation table + plots, live stats, bundle reload; text from i18n.js.
"use strict";
const $ = (s) => document.querySelector(s);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const rates = [];
// Reads need the read key unless the server runs in demo mode: a `?key=` in the address is kept in localStorage.
const urlKey = new URLSearchParams(location.search).get("key");
if (urlKey) localStorage.setItem("soutui.key", urlKey);
const authed = (url) => fetch(url, { headers: { "X-API-Key": localStorage.getItem("soutui.key") || "" } });

// a value translated where i18n.js knows it (metric names such as NDCG@10 stay as they are)
const known = (group, v) => (STRINGS.en[`${group}.${v}`] ? t(`${group}.${v}`) : v);

function table(rows, cols) {
  return `<table class="t"><tr>${cols.map((c) => `<th>${esc(known("col", c))}</th>`).join("")}</tr>` +
    rows.map((r) => `<tr>${cols.map((c) => `<td>${esc(typeof r[c] === "number" ? +r[c].toFixed(4) : r[c])}</td>`).join("")}</tr>`).join("") + "</table>";
}

async function loadBundle() {
  const b = await (await authed("/v1/admin/bundle")).json();
  const m = b.manifest;
  $("#bundle-version").textContent = t("admin.serving", { version: b.version });
  const models = Object.entries(m.models).map(([name, e]) => ({ model: name + (name === b.default_recommender ? t("admin.default") : ""), runtime: known("runtime", e.runtime || "recommender"), dir: e.dir }));
  const summary = tHtml("admin.summary", {
    version: `<code id="version">${esc(b.version)}</code>`, dataset: `<b>${esc(m.dataset)}</b>`, n: esc(m.n_items), created: esc(m.created),
  });
  $("#bundle").innerHTML = `<p>${summary}</p>` + table(models, ["model", "runtime", "dir"]) +
    `<p class="status">${esc(t("admin.search_index"))}: ${esc(t(m.search ? "admin.yes" : "admin.no"))} · ${esc(t("admin.store"))}: ${esc(b.store)} · ${esc(t(b.writes_enabled ? "admin.writes_on" : "admin.writes_off"))}</p>`;
  const ev = await (await authed("/v1/admin/evaluation")).json();
  const cols = ["HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR@10", "Coverage@20"];
  const rows = Object.entries(ev.models || {}).filter(([, r]) => r.test).map(([n, r]) => ({ model: n, ...r.test }));
  $("#evaluation").innerHTML = rows.length ? `<p class="status">${esc(ev.protocol || "")}; ${esc(ev.split || "")}</p>` + table(rows, ["model", ...cols.filter((c) => c in rows[0])]) : `<p class="empty">${esc(t("admin.no_eval"))}</p>`;
  $("#plots").innerHTML = (ev.plots || []).map((p) => `<img alt="${esc(p)}" data-src="/v1/admin/plots/${encodeURIComponent(p.split("/").pop())}">`).join("");
  for (const img of document.querySelectorAll("#plots img[data-src]")) authed(img.dataset.src).then((r) => r.blob()).then((b) => { img.src = URL.createObjectURL(b); });
}

function drawRates() {
  const c = $("#rate-chart"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1, ...rates);
  g.strokeStyle = "#e4572e"; g.lineWidth = 2; g.beginPath();
  rates.forEach((v, i) => { const x = (i / 59) * c.width, y = c.height - 4 - (v / max) * (c.height - 12); i ? g.lineTo(x, y) : g.moveTo(x, y); });
  g.stroke(); g.fillStyle = "#667085"; g.font = "11px sans-serif"; g.fillText(t("admin.rate", { n: max.toFixed(1) }), 4, 11);
}

async function pollStats() {
  try {
    const s = await (await authed("/v1/admin/stats")).json();
    const rows = Object.entries(s.routes).filter(([r]) => r !== "/v1/admin/stats").map(([route, v]) => ({ route, ...v }));
    $("#stats").innerHTML = table(rows, ["route", "rate_per_s", "count", "errors", "p50_ms", "p95_ms", "p99_ms"]) + `<p class="status">${esc(t("admin.users", { n: s.users }))}</p>`;
    rates.push(rows.reduce((a, r) => a + r.rate_per_s, 0)); if (rates.length > 60) rates.shift();
    drawRates();
  } catch (e) { $("#stats").textContent = t("admin.stats_down", { msg: e.message }); }
}

// --- model health (GET /v1/admin/monitoring): plain-words verdicts, plots of the server's recent points ---
// at most `d` decimals, and three significant digits for small values (a test threshold of 1e-9 h stays 1e-9)
const fmt = (v, d = 2) => (v === null || v === undefined ? "–" : Math.abs(+v) >= 10 ** -d || +v === 0 ? String(+(+v).toFixed(d)) : String(+(+v).toPrecision(3)));

function verdicts(rep) {
  const a = Object.fromEntries(rep.alerts.map((x) => [x.name, x]));
  const d = rep.drift, all = rep.served.find((r) => r.model === "all");
  const lim = (x, f = (v) => fmt(v)) => (x.threshold > 0 ? f(x.threshold) : t("mon.off"));
  const out = [];
  const age = a.stale_model;
  if (age.value !== null) out.push([age.firing ? "firing" : "", t(age.firing ? "mon.stale" : "mon.fresh", { value: fmt(age.value, 1), limit: lim(age, (v) => fmt(v, 0)) })]);
  if (!d.enough) out.push(["waiting", t("mon.drift_wait", { min: rep.minimums.drift_events, n: d.live_events })]);
  else {
    for (const name of ["drift_event_type", "drift_item_popularity"]) {
      if (a[name].firing) out.push(["firing", t(name === "drift_event_type" ? "mon.drift_event_type" : "mon.drift_item_popularity", { value: fmt(a[name].value), limit: lim(a[name]) })]);
    }
    if (!a.drift_event_type.firing && !a.drift_item_popularity.firing) out.push(["", t("mon.no_drift", { types: fmt(d.event_type), items: fmt(d.item_popularity), limit: lim(a.drift_event_type), n: d.live_events })]);
    const pct = (v) => fmt(100 * v, 1);
    out.push([a.new_items.firing ? "firing" : "", t(a.new_items.firing ? "mon.new_items" : "mon.new_items_ok", { value: pct(d.new_item_share ?? 0), limit: lim(a.new_items, pct) })]);
  }
  const cov = a.low_coverage;
  if (cov.value === null) out.push(["waiting", t("mon.coverage_wait", { min: rep.minimums.lists, n: all ? all.lists : 0 })]);
  else out.push([cov.firing ? "firing" : "", t(cov.firing ? "mon.low_coverage" : "mon.coverage_ok", { value: fmt(100 * cov.value, 1), limit: lim(cov, (v) => fmt(100 * v, 1)) })]);
  const lag = a.ingest_lag;
  if (lag.value === null) out.push(["waiting", t("mon.lag_wait")]);
  else out.push([lag.firing ? "firing" : "", t(lag.firing ? "mon.lag" : "mon.lag_ok", { value: fmt(lag.value, 1), limit: lim(lag, (v) => fmt(v, 0)) })]);
  if (!rep.alerts.some((x) => x.firing)) out.unshift(["", t("mon.all_ok")]);
  return out;
}

// one small line chart: several series from the history points, a dashed line at the threshold
function drawSeries(id, points, series, limit) {
  const c = $(id), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.font = "11px sans-serif";
  const vals = points.flatMap((p) => series.map(([k]) => p[k])).filter((v) => v !== null && v !== undefined);
  if (!vals.length) { g.fillStyle = "#667085"; g.fillText(t("mon.no_points"), 4, 24); return; }
  const max = Math.max(1e-9, ...vals, limit > 0 ? limit * 1.1 : 0);
  const x = (i) => (points.length < 2 ? c.width / 2 : (i / (points.length - 1)) * (c.width - 8) + 4);
  const y = (v) => c.height - 4 - (v / max) * (c.height - 30);
  if (limit > 0) {
    g.strokeStyle = "#b42318"; g.setLineDash([4, 3]); g.beginPath(); g.moveTo(0, y(limit)); g.lineTo(c.width, y(limit)); g.stroke(); g.setLineDash([]);
  }
  series.forEach(([k, label, color], j) => {
    g.strokeStyle = color; g.fillStyle = color; g.lineWidth = 2; g.beginPath();
    let started = false;
    points.forEach((p, i) => { const v = p[k]; if (v === null || v === undefined) return; started ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v)); started = true; });
    g.stroke();
    if (points.length === 1 && started) { g.beginPath(); g.arc(x(0), y(points[0][k]), 3, 0, 2 * Math.PI); g.fill(); }
    g.fillText(`${label} ${fmt(points[points.length - 1][k], 3)}`, 4 + j * 150, 11);
  });
  if (limit > 0) { g.fillStyle = "#b42318"; g.fillText(`${t("mon.limit")} ${fmt(limit, 2)}`, c.width - 70, 24); }
}

async function pollMonitoring() {
  try {
    const rep = await (await authed("/v1/admin/monitoring")).json();
    $("#mon-verdicts").innerHTML = verdicts(rep).map(([cls, text]) => `<li class="${cls}">${esc(text)}</li>`).join("");
    const th = rep.thresholds, h = rep.history;
    drawSeries("#mon-served", h, [["coverage", t("mon.plot_coverage"), "#2e90fa"], ["gini", t("mon.plot_gini"), "#e4572e"]], th.low_coverage);
    drawSeries("#mon-drift", h, [["psi_event_type", t("mon.plot_psi_types"), "#7a5af8"], ["psi_item_popularity", t("mon.plot_psi_items"), "#e4572e"], ["new_item_share", t("mon.plot_new_items"), "#2e9e5b"]], th.drift_event_type);
    drawSeries("#mon-age", h, [["bundle_age_h", t("mon.plot_age"), "#2e9e5b"]], th.stale_model);
    drawSeries("#mon-lag", h, [["ingest_lag_s", t("mon.plot_lag"), "#b54708"]], th.ingest_lag);
    $("#mon-served-table").innerHTML = table(rep.served, ["model", "arm", "lists", "items_served", "coverage", "gini"]);
  } catch (e) { $("#mon-verdicts").innerHTML = `<li class="waiting">${esc(t("mon.stats_down", { msg: e.message }))}</li>`; }
}

$("#reload-btn").addEventListener("click", async () => {
  let key = localStorage.getItem("soutui.key");
  if (!key) { key = prompt(t("admin.key_prompt")) || ""; localStorage.setItem("soutui.key", key); }
  const r = await fetch("/v1/admin/reload", { method: "POST", headers: { "Content-Type": "application/json", "X-API-Key": key }, body: "{}" });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) localStorage.removeItem("soutui.key");
  $("#reload-log").textContent = r.ok ? t("admin.loaded", { bundle: body.bundle, previous: body.previous }) : t("admin.refused", { msg: body.detail || r.statusText });
  loadBundle();
});

setupLangSwitch("admin.doc_title", () => { loadBundle(); pollStats(); pollMonitoring(); });
loadBundle();
pollStats();
setInterval(pollStats, 2000);
pollMonitoring();
setInterval(pollMonitoring, 10000);
