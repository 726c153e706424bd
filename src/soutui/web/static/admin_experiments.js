// soutui admin dashboard: the online experiments panel (GET /v1/admin/experiments). Per experiment a table of the
// arms and an SVG forest plot: each effect (b - a, or b's share of interleaving wins) with its 95 % CI against "no difference".
"use strict";
Object.assign(STRINGS.en, {
  "exp.title": "Online experiments", "exp.note": "(from the experiment log; 95 % CI, two-sided p)",
  "exp.none": "No experiment has served yet (declare them under [[serve.experiments]] in the serve config).",
  "exp.down": "experiments unavailable: {msg}", "exp.head": "{name} · {kind} · {users} users · CTR@{k}",
  "exp.winner": "winner at 5 %: arm {arm} ({model})", "exp.no_winner": "no winner yet (not significant at 5 %)",
  "exp.wins": "wins by clicks: a {a} · b {b} · ties {tie}", "exp.unmatched": "{n} event(s) named an impression that was not theirs",
  "exp.ctr": "CTR b − a", "exp.cart_rate": "add-to-cart b − a", "exp.purchase_rate": "purchase b − a",
  "exp.win_share": "b's share of wins", "exp.p": "p = {p}",
  "col.bundle": "bundle", "col.impressions": "impressions", "col.ctr": "CTR", "col.cart_rate": "add-to-cart rate",
  "col.purchase_rate": "purchase rate",
});
Object.assign(STRINGS.zh, {
  "exp.title": "在线实验", "exp.note": "（来自实验日志；95% 置信区间，双侧 p 值）",
  "exp.none": "还没有实验产生曝光（在服务配置的 [[serve.experiments]] 中声明实验）。",
  "exp.down": "实验数据不可用：{msg}", "exp.head": "{name} · {kind} · {users} 位用户 · CTR@{k}",
  "exp.winner": "5% 显著性下的胜者：{arm} 组（{model}）", "exp.no_winner": "尚无胜者（5% 水平下不显著）",
  "exp.wins": "按点击获胜：a {a} · b {b} · 平局 {tie}", "exp.unmatched": "{n} 个事件引用了不属于它的曝光",
  "exp.ctr": "点击率 b − a", "exp.cart_rate": "加购率 b − a", "exp.purchase_rate": "购买率 b − a",
  "exp.win_share": "b 的获胜占比", "exp.p": "p = {p}",
  "col.bundle": "模型包", "col.impressions": "曝光数", "col.ctr": "点击率", "col.cart_rate": "加购率", "col.purchase_rate": "购买率",
});

const expFmt = (v, d = 4) => (v === null || v === undefined ? "—" : (+v).toFixed(d));

// rows: [{label, value, lo, hi, p}], centre: the "no difference" value (0 or 0.5)
function forestSvg(rows, centre) {
  const W = 540, left = 150, right = 70, rowH = 26, H = rows.length * rowH + 22;
  const ends = rows.flatMap((r) => [r.lo, r.hi, r.value]).filter((v) => v !== null && v !== undefined);
  const span = Math.max(1e-6, ...ends.map((v) => Math.abs(v - centre))) * 1.15;
  const x = (v) => left + ((v - centre + span) / (2 * span)) * (W - left - right);
  let s = `<svg class="forest" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" style="max-width:100%;height:auto" role="img" xmlns="http://www.w3.org/2000/svg">`;
  s += `<line x1="${x(centre)}" y1="4" x2="${x(centre)}" y2="${H - 18}" stroke="#98a2b3" stroke-dasharray="3 3"/>`;
  s += `<text x="${x(centre)}" y="${H - 4}" font-size="10" text-anchor="middle" fill="#667085">${centre}</text>`;
  rows.forEach((r, i) => {
    const y = 16 + i * rowH;
    s += `<text x="4" y="${y + 4}" font-size="11" fill="#344054">${esc(r.label)}</text>`;
    if (r.value === null || r.value === undefined) return;
    const sig = r.p !== null && r.p !== undefined && r.p < 0.05, colour = sig ? "#e4572e" : "#2e90fa";
    if (r.lo !== null && r.lo !== undefined) s += `<line x1="${x(r.lo)}" y1="${y}" x2="${x(r.hi)}" y2="${y}" stroke="${colour}" stroke-width="2"/>`;
    s += `<circle cx="${x(r.value)}" cy="${y}" r="4" fill="${colour}"/>`;
    s += `<text x="${W - right + 6}" y="${y + 4}" font-size="10" fill="#667085">${esc(t("exp.p", { p: expFmt(r.p, 3) }))}</text>`;
  });
  return s + "</svg>";
}

function experimentHtml(e) {
  const arms = ["a", "b"].map((arm) => ({ arm, ...e.arms[arm] }));
  const cols = ["arm", "model", "bundle", "impressions", "ctr", "cart_rate", "purchase_rate"];
  let rows;
  if (e.kind === "interleave") {
    rows = [{ label: t("exp.win_share"), value: e.test.b_win_share, lo: e.test.ci95 && e.test.ci95[0], hi: e.test.ci95 && e.test.ci95[1], p: e.test.p_value }];
  } else {
    rows = ["ctr", "cart_rate", "purchase_rate"].map((m) => {
      const d = e.diff_b_minus_a[m];
      return { label: t(`exp.${m}`), value: d.diff, lo: d.ci95 && d.ci95[0], hi: d.ci95 && d.ci95[1], p: d.p_value };
    });
  }
  const verdict = e.winner ? t("exp.winner", { arm: e.winner, model: e.arms[e.winner].model }) : t("exp.no_winner");
  const wins = e.kind === "interleave" ? `<p class="status">${esc(t("exp.wins", e.wins))}</p>` : "";
  return `<h3>${esc(t("exp.head", { name: e.name, kind: e.kind, users: e.users, k: e.k }))}</h3>` + table(arms, cols) + wins +
    forestSvg(rows, e.kind === "interleave" ? 0.5 : 0) + `<p class="status${e.winner ? " winner" : ""}">${esc(verdict)}</p>`;
}

async function pollExperiments() {
  const box = $("#experiments-body");
  if (!box) return;
  // the panel's title is written here, with the strings of this file (i18n.js holds the other panels')
  $("#experiments-title").innerHTML = `${esc(t("exp.title"))} <span class="status">${esc(t("exp.note"))}</span>`;
  try {
    const r = await authed("/v1/admin/experiments");
    if (!r.ok) throw new Error(r.statusText);
    const rep = await r.json();
    box.innerHTML = rep.experiments.length ? rep.experiments.map(experimentHtml).join("") : `<p class="empty">${esc(t("exp.none"))}</p>`;
    if (rep.unmatched_claims) box.innerHTML += `<p class="status">${esc(t("exp.unmatched", { n: rep.unmatched_claims }))}</p>`;
  } catch (e) { box.textContent = t("exp.down", { msg: e.message }); }
}

// loaded before admin.js (so the strings above exist when it translates the page); poll once every script has run
document.addEventListener("DOMContentLoaded", () => {
  document.querySelector("#lang")?.addEventListener("change", pollExperiments);
  pollExperiments();
  setInterval(pollExperiments, 10000);
});
