// soutui dashboard: the explanations panel (GET /v1/admin/explanations) — global LTR feature importance and
// the default model's mean attribution by history position, as bar lists (no build step; i18n.js gives t()).
"use strict";
(function () {
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const bars = (rows) => {
    const max = Math.max(...rows.map((r) => r[1]), 1e-12);
    return rows.map(([name, v]) => `<div class="bar-row"><span class="bar-label">${esc(name)}</span>
      <span class="bar" style="width:${Math.round((v / max) * 100)}%"></span><span class="bar-val">${(100 * v).toFixed(1)} %</span></div>`).join("");
  };
  async function load() {
    const box = document.querySelector("#explain-body");
    if (!box) return;
    try {
      const r = await fetch("/v1/admin/explanations", { headers: { "X-API-Key": localStorage.getItem("soutui.key") || "" } });
      if (!r.ok) throw new Error(r.statusText);
      const d = await r.json();
      const ltr = d.ltr_importance.map((f) => [f.name, f.share]);
      const pos = d.position.mean_share.map((v, i) => [i === 0 ? t("expl.last") : t("expl.pos", { n: i + 1 }), v]);
      box.innerHTML = `<h3>${esc(t("expl.ltr"))}</h3><div id="explain-ltr">${ltr.length ? bars(ltr) : esc(t("expl.none"))}</div>
        <h3>${esc(t("expl.position", { model: d.position.model, n: d.position.users }))}</h3>
        <div id="explain-position">${pos.length ? bars(pos) : esc(t("expl.none"))}</div>`;
    } catch (e) { box.textContent = t("expl.none") + " (" + e.message + ")"; }
  }
  window.addEventListener("load", load);
  window.addEventListener("load", () => document.getElementById("lang").addEventListener("change", load));
})();
