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

$("#reload-btn").addEventListener("click", async () => {
  let key = localStorage.getItem("soutui.key");
  if (!key) { key = prompt(t("admin.key_prompt")) || ""; localStorage.setItem("soutui.key", key); }
  const r = await fetch("/v1/admin/reload", { method: "POST", headers: { "Content-Type": "application/json", "X-API-Key": key }, body: "{}" });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) localStorage.removeItem("soutui.key");
  $("#reload-log").textContent = r.ok ? t("admin.loaded", { bundle: body.bundle, previous: body.previous }) : t("admin.refused", { msg: body.detail || r.statusText });
  loadBundle();
});

setupLangSwitch("admin.doc_title", () => { loadBundle(); pollStats(); });
loadBundle();
pollStats();
setInterval(pollStats, 2000);
