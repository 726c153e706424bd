// soutui storefront: plain JS over the /v1 API (no build step); text comes from i18n.js (t, translateReason).
"use strict";
const $ = (s) => document.querySelector(s);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const state = { user: localStorage.getItem("soutui.user") || "", lastQuery: "" };
// Reads need the read key unless the server runs in demo mode: a `?key=` in the address is kept in localStorage.
const urlKey = new URLSearchParams(location.search).get("key");
if (urlKey) localStorage.setItem("soutui.key", urlKey);
const authed = (url) => fetch(url, { headers: { "X-API-Key": localStorage.getItem("soutui.key") || "" } });

async function api(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) url.searchParams.set(k, v);
  const r = await authed(url);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : r.statusText);
  return body;
}

function hue(s) { let h = 0; for (const c of String(s)) h = (h * 31 + c.codePointAt(0)) % 360; return h; }

// An item without a real title (missing, or the API fell back to its id) is never shown as a bare id.
function label(it) {
  const title = it.title && it.title !== it.item_id ? it.title : "";
  return title || [it.brand, it.category].filter(Boolean).join(" · ") || t("item.untitled");
}

function stockBadge(it) {
  return it.in_stock ? `<span class="badge">${esc(t("item.in_stock"))}</span>` : `<span class="badge out">${esc(t("item.out_of_stock"))}</span>`;
}

function card(it) {
  const price = it.price == null ? "" : `<span class="price">$${it.price.toFixed(2)}</span>`;
  const name = label(it);
  const initial = esc([...(it.brand || name || "?")][0].toUpperCase());
  return `<a class="card" data-item="${esc(it.item_id)}" href="#/item/${encodeURIComponent(it.item_id)}">
    <div class="thumb" style="background:hsl(${hue(it.category || name)} 55% 62%)">${initial}</div>
    <div class="title">${esc(name)}</div>
    <div class="meta">${esc(it.brand || "")}${it.brand && it.category ? " · " : ""}${esc(it.category || "")}</div>
    <div>${price} ${stockBadge(it)}</div>
    <div class="reason">${esc(translateReason(it.reason))}</div>
    <button type="button" class="why" data-why="${esc(it.item_id)}">${esc(t("why.button"))}</button></a>`;
}

// "why this?": the same list asked again with explain=true; the card's attributions as a small bar chart.
const sources = {};
function whyChart(ex) {
  if (!ex || !ex.attributions.length) return `<div class="whybox">${esc(ex ? (currentLang() === "zh" ? ex.reason_zh : ex.reason) : t("why.none"))}</div>`;
  const top = ex.attributions.filter((a) => a.weight !== 0).slice(0, 6);
  const max = Math.max(...top.map((a) => Math.abs(a.weight)), 1e-12);
  const bars = top.map((a) => `<div class="bar-row" title="${esc(t(`why.kind_${a.kind}`))}">
      <span class="bar-label">${esc(a.name)}</span>
      <span class="bar ${a.weight < 0 ? "neg" : ""} ${a.kind}" style="width:${Math.round((Math.abs(a.weight) / max) * 100)}%"></span>
      <span class="bar-val">${a.weight.toFixed(3)}</span></div>`).join("");
  return `<div class="whybox"><b>${esc(t("why.title"))}</b> ${esc(currentLang() === "zh" ? ex.reason_zh : ex.reason)}${bars}</div>`;
}

async function why(btn) {
  const card = btn.closest(".card");
  const open = card.querySelector(".whybox");
  if (open) { open.remove(); return; }
  const src = sources[btn.closest("section").id];
  if (!src) return;
  try {
    const res = await api(src.path, { ...src.params, explain: "true" });
    const row = res.items.find((r) => r.item_id === btn.dataset.why);
    btn.insertAdjacentHTML("afterend", whyChart(row && row.explanation));
  } catch (e) { btn.insertAdjacentHTML("afterend", `<div class="whybox">${esc(e.message)}</div>`); }
}

function block(title, items, id, empty = t("block.empty"), src = null) {
  if (src) sources[id] = src;
  const body = items.length ? `<div class="grid">${items.map(card).join("")}</div>` : `<div class="empty">${esc(empty)}</div>`;
  return `<section class="block" id="${id}"><h2>${esc(title)}</h2>${body}</section>`;
}

function filters() {
  return {
    category: $("#f-category").value, brand: $("#f-brand").value, min_price: $("#f-min").value,
    max_price: $("#f-max").value, in_stock: $("#f-stock").checked ? "true" : "", sort: $("#f-sort").value,
  };
}

function facetEntries(f) {
  // accept {value: count}, [{value, count}] or [[value, count]]
  if (!f) return [];
  if (Array.isArray(f)) return f.map((x) => (Array.isArray(x) ? x : [x.value ?? x.name, x.count]));
  return Object.entries(f);
}

function fillFacet(sel, entries) {
  const keep = sel.value;
  sel.innerHTML = `<option value="" data-i18n="filters.all">${esc(t("filters.all"))}</option>` + entries.slice(0, 40)
    .map(([v, n]) => `<option value="${esc(v)}">${esc(v)}${n != null ? ` (${n})` : ""}</option>`).join("");
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

async function home() {
  const view = $("#view");
  view.innerHTML = `<div class="empty">${esc(t("status.loading"))}</div>`;
  const cat = $("#f-category").value;
  try {
    const recSrc = { path: `/v1/recommend/${encodeURIComponent(state.user)}`, params: { k: 12, category: cat, diverse: "true" } };
    const [recs, trend] = await Promise.all([
      state.user ? api(recSrc.path, recSrc.params) : null,
      api("/v1/trending", { k: 12, category: cat }),
    ]);
    view.innerHTML = (recs ? block(t("block.recs", { user: state.user }), recs.items, "recs", undefined, recSrc) : "") +
      block(cat ? t("block.popular_in", { category: cat }) : t("block.trending"), trend.items, "trending");
  } catch (e) { view.innerHTML = `<div class="empty">${esc(t("status.error", { msg: e.message }))}</div>`; }
}

async function search(q) {
  const view = $("#view");
  state.lastQuery = q;
  view.innerHTML = `<div class="empty">${esc(t("status.searching"))}</div>`;
  try {
    const params = { q, k: 24, user_id: state.user, ...filters() };
    const res = await api("/v1/search", params);
    const facets = res.facets || {};
    if (facets.category) fillFacet($("#f-category"), facetEntries(facets.category));
    if (facets.brand) fillFacet($("#f-brand"), facetEntries(facets.brand));
    view.innerHTML = block(t("block.results", { q, n: res.items.length }), res.items, "results", t("search.none", { q }),
      { path: "/v1/search", params });
  } catch (e) { view.innerHTML = `<div class="empty">${esc(t("status.search_failed", { msg: e.message }))}</div>`; }
}

async function product(id) {
  const view = $("#view");
  view.innerHTML = `<div class="empty">${esc(t("status.loading"))}</div>`;
  try {
    const simSrc = { path: `/v1/similar/${encodeURIComponent(id)}`, params: { k: 8 } };
    const [it, sim] = await Promise.all([api(`/v1/items/${encodeURIComponent(id)}`), api(simSrc.path, simSrc.params)]);
    const price = it.price == null ? "" : `$${it.price.toFixed(2)}`;
    const name = label(it);
    view.innerHTML = `<div class="product" id="product">
        <div class="thumb" style="background:hsl(${hue(it.category || name)} 55% 62%)">${esc([...(it.brand || name || "?")][0].toUpperCase())}</div>
        <div><h1 id="product-title">${esc(name)}</h1>
          <div class="meta">${esc(it.brand || "")} ${esc(it.category || "")}</div>
          <p class="price">${price} ${stockBadge(it)}</p>
          <button id="add-cart" type="button">${esc(t("item.add_cart"))}</button></div></div>` + block(t("block.similar"), sim.items, "similar", undefined, simSrc);
    $("#add-cart").onclick = () => sendEvent(id, "cart");
    sendEvent(id, "view");
  } catch (e) { view.innerHTML = `<div class="empty">${esc(e.message)}</div>`; }
}

async function sendEvent(itemId, type) {
  // Events need an API key; the storefront uses one from localStorage (set in the dashboard) if present.
  if (!state.user) return;
  const key = localStorage.getItem("soutui.key") || "";
  const ev = { event_id: `${Date.now()}-${Math.random().toString(36).slice(2)}`, user_id: state.user, item_id: itemId, event_type: type };
  const r = await fetch("/v1/events", { method: "POST", headers: { "Content-Type": "application/json", "X-API-Key": key }, body: JSON.stringify({ events: [ev] }) });
  $("#status").textContent = r.ok ? t("event.recorded", { type: t(`event.${type}`) }) : t("event.refused", { status: r.status });
}

function route() {
  const h = decodeURIComponent(location.hash.slice(1));
  if (h.startsWith("/item/")) return product(h.slice(6));
  if (h.startsWith("/search/")) { $("#q").value = h.slice(8); return search(h.slice(8)); }
  return home();
}

$("#search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("#q").value.trim();
  if (q) location.hash = `#/search/${encodeURIComponent(q)}`;
});
for (const id of ["#f-category", "#f-brand", "#f-min", "#f-max", "#f-stock", "#f-sort"]) {
  $(id).addEventListener("change", () => route());
}
$("#user").value = state.user;
$("#user").addEventListener("change", () => { state.user = $("#user").value.trim(); localStorage.setItem("soutui.user", state.user); route(); });
$("#demo-user").addEventListener("click", async () => {
  const d = await api("/v1/demo-users", { n: 1 });
  if (d.users.length) { state.user = d.users[0]; $("#user").value = state.user; localStorage.setItem("soutui.user", state.user); }
  location.hash = "#/"; route();
});
window.addEventListener("hashchange", route);
$("#view").addEventListener("click", (e) => {
  const btn = e.target.closest(".why");
  if (!btn) return;
  e.preventDefault(); // the button sits inside the card's link
  e.stopPropagation();
  why(btn);
});
setupLangSwitch("store.doc_title", route);
route();
