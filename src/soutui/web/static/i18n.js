// soutui web i18n: English and Simplified Chinese for the storefront and the dashboard (no build step).
// The choice is kept in localStorage ("soutui.lang"); without one, a browser set to Chinese gets Chinese.
// Static text is marked in the HTML (data-i18n, data-i18n-placeholder, data-i18n-aria); scripts call t().
"use strict";
const LANG_KEY = "soutui.lang";
const LANGS = { en: "English", zh: "中文" };

const STRINGS = {
  en: {
    "store.doc_title": "soutui 搜推 — storefront", "store.subtitle": "storefront",
    "search.placeholder": "Search products…", "search.aria": "search", "search.button": "Search",
    "user.label": "User", "user.placeholder": "user id", "user.aria": "user id", "user.demo": "Demo user",
    "nav.dashboard": "dashboard →", "nav.store": "← storefront", "lang.aria": "language",
    "filters.title": "Filters", "filters.category": "Category", "filters.brand": "Brand", "filters.all": "All",
    "filters.price": "Price", "filters.min": "min", "filters.max": "max", "filters.min_aria": "min price",
    "filters.max_aria": "max price", "filters.in_stock": "In stock only", "filters.sort": "Sort",
    "sort.relevance": "Relevance", "sort.popularity": "Popularity", "sort.price_asc": "Price: low to high",
    "sort.price_desc": "Price: high to low",
    "item.in_stock": "in stock", "item.out_of_stock": "out of stock", "item.untitled": "Untitled product",
    "item.add_cart": "Add to cart", "block.similar": "Similar items", "block.empty": "Nothing to show.",
    "block.recs": "Recommended for you ({user})", "block.popular_in": "Popular in {category}",
    "block.trending": "Trending this week", "block.results": "Results for “{q}” ({n})",
    "search.none": "No products match “{q}”. Try other words.",
    "status.loading": "Loading…", "status.searching": "Searching…", "status.error": "Error: {msg}",
    "status.search_failed": "Search failed: {msg}", "event.recorded": "recorded {type}",
    "event.refused": "event not recorded ({status})",
    "event.view": "view", "event.cart": "add to cart",
    "admin.doc_title": "soutui — admin dashboard", "admin.subtitle": "admin dashboard",
    "admin.reload": "Reload newest bundle", "admin.bundle": "Bundle & models", "admin.traffic": "Live traffic",
    "admin.traffic_note": "(last 10 s rate, 60 s latency)", "admin.evaluation": "Evaluation (last run)",
    "admin.reload_log": "Reload log", "admin.serving": "serving {version}",
    "admin.summary": "version {version} · dataset {dataset} · {n} items · built {created}",
    "admin.default": " (default)", "admin.search_index": "search index", "admin.yes": "yes", "admin.no": "no",
    "admin.store": "store", "admin.writes_on": "writes enabled", "admin.writes_off": "writes disabled",
    "admin.no_eval": "No evaluation in this bundle.", "admin.users": "{n} users in memory",
    "admin.stats_down": "stats unavailable: {msg}", "admin.key_prompt": "API key (X-API-Key) for admin actions:",
    "admin.loaded": "loaded {bundle} (was {previous})", "admin.refused": "refused: {msg}",
    "col.model": "model", "col.runtime": "runtime", "col.dir": "dir", "col.route": "route",
    "col.rate_per_s": "req/s", "col.count": "requests", "col.errors": "errors", "col.p50_ms": "p50 ms",
    "col.p95_ms": "p95 ms", "col.p99_ms": "p99 ms", "runtime.recommender": "recommender", "runtime.onnx": "ONNX",
    "admin.rate": "{n} req/s",
    "mon.title": "Model health", "mon.note": "(thresholds from the serve config; plots: one point per 30 s while polled)",
    "mon.all_ok": "All monitors are within their thresholds.", "mon.stats_down": "monitoring unavailable: {msg}",
    "mon.stale": "The model is stale: its bundle was built {value} h ago (limit {limit} h). Retrain it (soutui retrain) so the server loads a new bundle.",
    "mon.fresh": "The model is fresh: its bundle was built {value} h ago (limit {limit} h).",
    "mon.drift_event_type": "The data has drifted: the mix of event types (views, carts, purchases) is not the one the model was trained on (PSI {value}, limit {limit}).",
    "mon.drift_item_popularity": "The data has drifted: shoppers now interact with other items than in the training data (item popularity PSI {value}, limit {limit}).",
    "mon.no_drift": "No data drift: PSI {types} for event types, {items} for item popularity (limit {limit}, {n} live events).",
    "mon.drift_wait": "Drift is judged once the window holds {min} live events ({n} so far).",
    "mon.low_coverage": "Recommendations are concentrated: only {value} % of the catalogue was shown in the window (minimum {limit} %).",
    "mon.coverage_ok": "{value} % of the catalogue was shown in the window (minimum {limit} %).",
    "mon.coverage_wait": "Coverage is judged once {min} lists were served in the window ({n} so far).",
    "mon.lag": "Events arrive late: the median ingest lag is {value} s (limit {limit} s).",
    "mon.lag_ok": "Events arrive on time: the median ingest lag is {value} s (limit {limit} s).",
    "mon.lag_wait": "No live events received yet.", "mon.off": "off",
    "mon.plot_coverage": "coverage", "mon.plot_gini": "Gini", "mon.plot_psi_types": "PSI event types",
    "mon.plot_psi_items": "PSI item popularity", "mon.plot_age": "bundle age (h)", "mon.plot_lag": "ingest lag (s)",
    "mon.limit": "limit", "mon.no_points": "no points yet",
    "mon.new_items": "The catalogue has moved on: {value} % of live events are on items the model never saw in training (limit {limit} %). Retrain so it can recommend them.",
    "mon.new_items_ok": "{value} % of live events are on items unseen in training (limit {limit} %).",
    "mon.plot_new_items": "new-item share",
    "col.arm": "arm", "col.lists": "lists", "col.items_served": "items shown", "col.coverage": "coverage", "col.gini": "Gini",
    "why.button": "why this?", "why.title": "Why this?", "why.none": "No explanation for this item.",
    "why.kind_history_item": "your history", "why.kind_feature": "search signal", "why.kind_content": "item content",
    "expl.title": "Explanations", "expl.ltr": "Search ranker: feature importance (share of total gain)",
    "expl.position": "{model}: average attribution by history position ({n} users, occlusion)",
    "expl.pos": "{n} back", "expl.last": "last item", "expl.none": "Nothing to show yet.",
  },
  zh: {
    "store.doc_title": "搜推 soutui — 商城", "store.subtitle": "商城",
    "search.placeholder": "搜索商品…", "search.aria": "搜索", "search.button": "搜索",
    "user.label": "用户", "user.placeholder": "用户 ID", "user.aria": "用户 ID", "user.demo": "示例用户",
    "nav.dashboard": "管理后台 →", "nav.store": "← 返回商城", "lang.aria": "语言",
    "filters.title": "筛选", "filters.category": "类目", "filters.brand": "品牌", "filters.all": "全部",
    "filters.price": "价格", "filters.min": "最低", "filters.max": "最高", "filters.min_aria": "最低价",
    "filters.max_aria": "最高价", "filters.in_stock": "仅看有货", "filters.sort": "排序",
    "sort.relevance": "综合", "sort.popularity": "人气", "sort.price_asc": "价格从低到高",
    "sort.price_desc": "价格从高到低",
    "item.in_stock": "有货", "item.out_of_stock": "缺货", "item.untitled": "未命名商品",
    "item.add_cart": "加入购物车", "block.similar": "相似商品", "block.empty": "暂无商品。",
    "block.recs": "为你推荐（{user}）", "block.popular_in": "{category} 热门",
    "block.trending": "本周热门", "block.results": "“{q}”的搜索结果（{n} 件）",
    "search.none": "没有找到与“{q}”相关的商品，换个词试试。",
    "status.loading": "加载中…", "status.searching": "正在搜索…", "status.error": "出错了：{msg}",
    "status.search_failed": "搜索失败：{msg}", "event.recorded": "已记录：{type}",
    "event.refused": "行为未记录（{status}）",
    "event.view": "浏览", "event.cart": "加购",
    "admin.doc_title": "搜推 soutui — 管理后台", "admin.subtitle": "管理后台",
    "admin.reload": "加载最新模型包", "admin.bundle": "模型包与模型", "admin.traffic": "实时流量",
    "admin.traffic_note": "（请求率取近 10 秒，延迟取近 60 秒）", "admin.evaluation": "离线评估（最近一次）",
    "admin.reload_log": "加载记录", "admin.serving": "当前版本 {version}",
    "admin.summary": "版本 {version} · 数据集 {dataset} · {n} 件商品 · 构建于 {created}",
    "admin.default": "（默认）", "admin.search_index": "搜索索引", "admin.yes": "有", "admin.no": "无",
    "admin.store": "存储", "admin.writes_on": "允许写入", "admin.writes_off": "禁止写入",
    "admin.no_eval": "这个模型包没有评估结果。", "admin.users": "内存中有 {n} 位用户",
    "admin.stats_down": "暂时拿不到统计：{msg}", "admin.key_prompt": "管理操作需要 API 密钥（X-API-Key）：",
    "admin.loaded": "已加载 {bundle}（原为 {previous}）", "admin.refused": "被拒绝：{msg}",
    "col.model": "模型", "col.runtime": "运行方式", "col.dir": "目录", "col.route": "接口",
    "col.rate_per_s": "每秒请求", "col.count": "请求数", "col.errors": "错误数", "col.p50_ms": "p50 毫秒",
    "col.p95_ms": "p95 毫秒", "col.p99_ms": "p99 毫秒", "runtime.recommender": "Python 推荐器", "runtime.onnx": "ONNX",
    "admin.rate": "{n} 次/秒",
    "mon.title": "模型健康", "mon.note": "（阈值来自服务配置；曲线：页面打开时每 30 秒一个点）",
    "mon.all_ok": "所有监控指标都在阈值以内。", "mon.stats_down": "暂时拿不到监控数据：{msg}",
    "mon.stale": "模型已过时：模型包构建于 {value} 小时前（上限 {limit} 小时）。请重新训练（soutui retrain），让服务加载新的模型包。",
    "mon.fresh": "模型是新的：模型包构建于 {value} 小时前（上限 {limit} 小时）。",
    "mon.drift_event_type": "数据已漂移：事件类型的构成（浏览、加购、购买）与训练时不同（PSI {value}，上限 {limit}）。",
    "mon.drift_item_popularity": "数据已漂移：顾客现在关注的商品与训练数据不同（商品热度 PSI {value}，上限 {limit}）。",
    "mon.no_drift": "没有数据漂移：事件类型 PSI {types}，商品热度 PSI {items}（上限 {limit}，实时事件 {n} 条）。",
    "mon.drift_wait": "窗口内有 {min} 条实时事件后才判断漂移（目前 {n} 条）。",
    "mon.low_coverage": "推荐过于集中：窗口内只展示了 {value}% 的商品（下限 {limit}%）。",
    "mon.coverage_ok": "窗口内展示了 {value}% 的商品（下限 {limit}%）。",
    "mon.coverage_wait": "窗口内推荐列表达到 {min} 个后才判断覆盖率（目前 {n} 个）。",
    "mon.lag": "事件到达延迟：摄入延迟中位数 {value} 秒（上限 {limit} 秒）。",
    "mon.lag_ok": "事件按时到达：摄入延迟中位数 {value} 秒（上限 {limit} 秒）。",
    "mon.lag_wait": "还没有收到实时事件。", "mon.off": "未启用",
    "mon.plot_coverage": "覆盖率", "mon.plot_gini": "基尼系数", "mon.plot_psi_types": "事件类型 PSI",
    "mon.plot_psi_items": "商品热度 PSI", "mon.plot_age": "模型包年龄（小时）", "mon.plot_lag": "摄入延迟（秒）",
    "mon.limit": "阈值", "mon.no_points": "暂无数据点",
    "mon.new_items": "商品已更新换代：{value}% 的实时事件发生在模型训练时没见过的商品上（上限 {limit}%）。请重新训练，让模型能推荐这些商品。",
    "mon.new_items_ok": "{value}% 的实时事件发生在训练时没见过的商品上（上限 {limit}%）。",
    "mon.plot_new_items": "新商品占比",
    "col.arm": "实验组", "col.lists": "列表数", "col.items_served": "展示商品数", "col.coverage": "覆盖率", "col.gini": "基尼系数",
    "why.button": "为什么推荐？", "why.title": "推荐理由", "why.none": "该商品暂无解释。",
    "why.kind_history_item": "你的浏览记录", "why.kind_feature": "搜索信号", "why.kind_content": "商品内容",
    "expl.title": "可解释性", "expl.ltr": "搜索排序模型：特征重要性（占总增益的比例）",
    "expl.position": "{model}：按历史位置的平均归因（{n} 位用户，遮挡法）",
    "expl.pos": "倒数第 {n} 个", "expl.last": "最近一个", "expl.none": "暂无数据。",
  },
};

// Reasons come from the API in English; in Chinese they are rewritten by pattern (titles stay as they are).
const REASONS_ZH = [
  [/^matches (.+) in title$/, (m) => `标题含 ${m[1]}`],
  [/^matches (.+) in brand\/category\/description$/, (m) => `品牌、类目或描述含 ${m[1]}`],
  [/^semantically similar to '(.*)'$/, (m) => `与“${m[1]}”意思相近`],
  [/^\(searched for (.+)\)$/, (m) => `（已按 ${m[1].replace(/ instead of /g, " 代替 ")} 搜索）`],
  [/^you often buy (.+)$/, (m) => `你常买 ${m[1]}`],
  [/^you often browse (.+)$/, (m) => `你常逛 ${m[1]}`],
  [/^similar to (.+) you viewed$/, (m) => `和你看过的 ${m[1]} 相似`],
  [/^similar to (.+)$/, (m) => `和 ${m[1]} 相似`],
  [/^because you viewed (.+)$/, (m) => `因为你看过 ${m[1]}`],
  [/^because you added (.+)$/, (m) => `因为你加购了 ${m[1]}`],
  [/^because you bought (.+)$/, (m) => `因为你买过 ${m[1]}`],
  [/^because you searched (.+)$/, (m) => `因为你搜过 ${m[1]}`],
  [/^popular in (.+)$/, (m) => `${m[1]} 热门`],
  [/^matches '(.*)'$/, (m) => `匹配“${m[1]}”`],
  [/^trending this week$/, () => "本周热门"],
  [/^mostly for its (.+)$/, (m) => `主要因为它的${m[1]}`],
  [/^ranked mainly by (.+)$/, (m) => `主要依据：${m[1]}`],
  [/^based on your recent activity$/, () => "根据你最近的浏览"],
  [/^recommended for you$/, () => "为你推荐"],
  [/^featured by the shop$/, () => "店铺推荐"],
];

function currentLang() {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved && saved in STRINGS) return saved;
  return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en";
}

function t(key, vars = {}) {
  const s = STRINGS[currentLang()][key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));
}

// Like t(), for HTML: the template is escaped, the values are inserted as given (the caller escapes them).
function tHtml(key, htmlVars = {}) {
  const s = STRINGS[currentLang()][key] ?? STRINGS.en[key] ?? key;
  const escaped = s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  return escaped.replace(/\{(\w+)\}/g, (_, k) => String(htmlVars[k] ?? ""));
}

function translateReason(reason) {
  if (!reason || currentLang() !== "zh") return reason || "";
  // "a; b" and "a (searched for …)" are translated part by part
  return reason.split("; ").map((part) => {
    const fix = part.match(/^(.*?) (\(searched for .+\))$/);
    const pieces = fix ? [fix[1], fix[2]] : [part];
    return pieces.map((p) => {
      for (const [re, f] of REASONS_ZH) { const m = p.match(re); if (m) return f(m); }
      return p;
    }).join(" ");
  }).join("；");
}

function applyI18n(titleKey) {
  const lang = currentLang();
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  if (titleKey) document.title = t(titleKey);
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of document.querySelectorAll("[data-i18n-aria]")) el.setAttribute("aria-label", t(el.dataset.i18nAria));
  const sel = document.getElementById("lang");
  if (sel) sel.value = lang;
}

// Fill the language switch and re-render through `onChange` when the user picks another language.
function setupLangSwitch(titleKey, onChange) {
  const sel = document.getElementById("lang");
  sel.innerHTML = Object.entries(LANGS).map(([v, name]) => `<option value="${v}">${name}</option>`).join("");
  applyI18n(titleKey);
  sel.addEventListener("change", () => {
    localStorage.setItem(LANG_KEY, sel.value);
    applyI18n(titleKey);
    onChange();
  });
}
