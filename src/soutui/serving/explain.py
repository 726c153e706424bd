"""Short human-readable reasons attached to every result ("because you viewed X"), and the
checked explanations `explain=true` adds (attributions, reason written from the strongest).

Reasons must be true: "because you viewed X" names the history item that most raises the
recommendation in the model's own terms (its item vectors, or its scores; see
`pair_similarity`); when no history item does, the reason says only what is known
("based on your recent activity").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from soutui.models.attribution import Attribution, strongest
from soutui.models.base import Recommender
from soutui.serving.bundle import Catalogue

VERBS = {"view": "viewed", "click": "viewed", "cart": "added", "purchase": "bought", "search": "searched"}


def short(title: str, n: int = 48) -> str:
    return title if len(title) <= n else title[: n - 1].rstrip() + "…"


PairSim = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (items, history) -> (k, h) affinity


def pair_similarity(model: Recommender, vectors: np.ndarray | None) -> PairSim:
    """How strongly each history item points at each result, in the model's own terms:
    cosine of the served item vectors when given, else the model's `item_affinity` (for
    ItemKNN its item-item similarity; 0 for a model that ignores history, e.g. popularity,
    so no history item is named as the reason)."""
    if vectors is not None:
        return lambda items, hist: vectors[items] @ vectors[hist].T
    return model.item_affinity


def because(
    items: list[int],
    history: np.ndarray,
    history_types: list[str],
    catalogue: Catalogue,
    affinity: PairSim,
    lookback: int = 20,
) -> list[str]:
    """For each recommended item, name the recent history item that most explains it."""
    if len(history) == 0:
        return ["trending this week"] * len(items)
    if not items:
        return ["based on your recent activity"] * len(items)
    hist = history[-lookback:]
    types = history_types[-lookback:]
    sims = affinity(np.asarray(items, np.int64), hist)  # (k, h)
    # ties (e.g. all zero) go to the most recent history item
    best = len(hist) - 1 - sims[:, ::-1].argmax(axis=1)
    out = []
    for row, b in enumerate(best):
        if sims[row, b] <= 0:
            out.append("based on your recent activity")
        else:
            out.append(f"because you {VERBS.get(types[b], 'viewed')} {short(catalogue.label(int(hist[b])))}")
    return out


def trending_reason(category: str | None) -> str:
    return f"popular in {category}" if category else "trending this week"


def similar_reason(catalogue: Catalogue, item: int) -> str:
    return f"similar to {short(catalogue.label(item))}"


def search_reason(query: str, given: str | None) -> str:
    return given or f"matches '{short(query, 40)}'"


PINNED_REASON = "featured by the shop"


# --- checked explanations (explain=true): attributions + a reason written from the strongest -------
ZH_VERBS = {"viewed": "看过", "added": "加购了", "bought": "买过", "searched": "搜过"}
CONTENT_ZH = {"title vectors": "标题", "attribute vectors": "类目和属性", "ID embedding": "购买行为"}
FEATURE_ZH = {
    "keyword match in the title": "标题关键词匹配",
    "keyword match in the description": "描述关键词匹配",
    "title match vs the best candidate": "标题匹配（相对最佳）",
    "keyword search rank": "关键词检索排名",
    "meaning match (MiniLM)": "语义匹配（MiniLM）",
    "meaning match vs the best (MiniLM)": "语义匹配相对最佳（MiniLM）",
    "semantic search rank (MiniLM)": "语义检索排名（MiniLM）",
    "meaning match (multilingual USE)": "语义匹配（多语言 USE）",
    "meaning match vs the best (USE)": "语义匹配相对最佳（USE）",
    "semantic search rank (USE)": "语义检索排名（USE）",
    "combined retrieval rank": "融合检索排名",
    "query words found in the title": "标题包含查询词",
    "query words found in the text": "正文包含查询词",
    "rare query words found in the title": "标题包含少见查询词",
    "share of the title the query covers": "查询覆盖标题的比例",
    "exact phrase in the title": "标题含完整短语",
    "last query word in the title": "标题含最后一个查询词",
    "first query word in the title": "标题含第一个查询词",
    "word pairs in the title": "标题含相邻词组",
    "numbers (sizes, models) match": "数字（尺寸、型号）匹配",
    "sizes (2 x 4, 16 gal) match": "规格（2 x 4、16 加仑）匹配",
    "spelling similarity": "拼写相似度",
    "query length": "查询长度",
    "title length": "标题长度",
    "spelling corrections": "拼写纠正",
    "brand named in the query": "查询中提到品牌",
    "category named in the query": "查询中提到类目",
    "price": "价格",
    "popularity": "热度",
    "keyword match (BM25)": "关键词匹配（BM25）",
    "meaning match": "语义匹配",
}
FALLBACK = ("based on your recent activity", "根据你最近的浏览")
LOOKBACK = 20  # history positions explained (the most recent), as `because`


def sentence(top: Attribution | None, verb: str = "viewed") -> tuple[str, str]:
    """(English, Chinese) reason written from the strongest attribution."""
    if top is None:
        return FALLBACK
    if top.kind == "history_item":
        return (
            f"because you {verb} {short(top.name)}",
            f"因为你{ZH_VERBS.get(verb, '看过')} {short(top.name)}",
        )
    if top.kind == "content":
        return f"mostly for its {top.name}", f"主要因为它的{CONTENT_ZH.get(top.name, top.name)}"
    return f"ranked mainly by {top.name}", f"主要依据：{FEATURE_ZH.get(top.name, top.name)}"


def note(attrs: list[Attribution], reason: tuple[str, str], method: str) -> dict[str, Any]:
    """The `explanation` object of one result."""
    return {
        "method": method,
        "reason": reason[0],
        "reason_zh": reason[1],
        "attributions": [a.as_dict() for a in attrs],
    }


def plain(reason: str, zh: str) -> dict[str, Any]:
    """An explanation with nothing to attribute (trending lists, pinned items)."""
    return note([], (reason, zh), "none")


def for_history(
    model: Recommender,
    history: np.ndarray,
    times: np.ndarray,
    history_types: list[str],
    items: list[int],
    catalogue: Catalogue,
    method: str = "occlusion",
) -> list[dict[str, Any]]:
    """Explanations of `items` recommended after `history`: the model's own attributions
    (`Recommender.attribute`) over the last LOOKBACK events, history items named by title,
    the reason written from the strongest positive history item (else the strongest of all)."""
    hist, ts, types = history[-LOOKBACK:], times[-LOOKBACK:], history_types[-LOOKBACK:]
    if not items:
        return []
    rows = model.attribute(hist, np.asarray(items, np.int64), ts, method=method)
    out = []
    for row in rows:
        named = [_named(a, catalogue) for a in row]
        top = strongest(named, "history_item") or strongest(named)
        verb = (
            VERBS.get(types[top.position], "viewed")
            if top is not None and top.position is not None
            else "viewed"
        )
        out.append(note(named, sentence(top, verb), method))
    return out


def for_similar(
    model: Recommender, item: int, items: list[int], catalogue: Catalogue
) -> list[dict[str, Any]]:
    """Why each of `items` is like `item`: attributions of a one-item history [item]."""
    if not items:
        return []
    rows = model.attribute(np.array([item], np.int64), np.asarray(items, np.int64))
    out = []
    for row in rows:
        named = [_named(a, catalogue) for a in row]
        top = strongest(named, "history_item")
        reason = (
            (f"similar to {short(top.name)}", f"和 {short(top.name)} 相似")
            if top is not None
            else (f"similar to {short(catalogue.label(item))}", f"和 {short(catalogue.label(item))} 相似")
        )
        out.append(note(named, reason, "occlusion"))
    return out


def for_search(rows: list[list[Attribution]], method: str) -> list[dict[str, Any]]:
    """Explanations of search hits from the engine's per-feature attributions."""
    how = {"ltr": "treeshap", "hybrid": "rrf"}.get(method, method)
    return [note(r, sentence(strongest(r)) if r else FALLBACK, how) for r in rows]


def _named(a: Attribution, catalogue: Catalogue) -> Attribution:
    if a.kind == "history_item" and a.item is not None:
        return Attribution(a.kind, catalogue.label(a.item), a.weight, a.item, a.position)
    return a


def overview(
    model: Recommender,
    model_name: str,
    catalogue: Catalogue,
    recent: dict[str, Any],
    ranker_importance: dict[str, float] | None,
    max_users: int = 50,
) -> dict[str, Any]:
    """The dashboard's explanation panel: the search ranker's global feature importance (share of
    total gain, readable names) and `model`'s mean attribution by history position over up to
    `max_users` live users with >= 2 known events (each user's top-1 recommendation, history
    excluded, explained by the model's own hook; |weights| normalised to sum 1 per user, so every
    user counts the same; position 1 = the most recent event)."""
    from soutui.search.ltr import feature_label

    gains = ranker_importance or {}
    total = sum(gains.values()) or 1.0
    ltr = [{"name": feature_label(k), "share": round(v / total, 4)} for k, v in gains.items()][:15]
    sums, counts, users = np.zeros(LOOKBACK), np.zeros(LOOKBACK), 0
    for live in list(recent.values()):
        if users >= max_users:
            break
        events = list(live)  # a copy: ingestion appends to the live deque meanwhile
        hist = np.array(
            [catalogue.index[i] for i, _, _ in events if i in catalogue.index][-LOOKBACK:], np.int64
        )
        if len(hist) < 2:
            continue
        times = np.array([ts for i, _, ts in events if i in catalogue.index][-LOOKBACK:], np.int64)
        scores = np.asarray(model.score([hist], [times])[0], np.float64)
        scores[hist] = -np.inf
        (row,) = model.attribute(hist, np.array([int(np.argmax(scores))]), times)
        w = np.zeros(len(hist))
        for a in row:
            if a.kind == "history_item" and a.position is not None:
                w[a.position] = abs(a.weight)
        if w.sum() <= 0:
            continue
        back = (w / w.sum())[::-1]  # index 0 = the most recent event
        sums[: len(back)] += back
        counts[: len(back)] += 1
        users += 1
    shares = [round(float(s / c), 4) for s, c in zip(sums, counts, strict=True) if c > 0]
    return {"ltr_importance": ltr, "position": {"model": model_name, "users": users, "mean_share": shares}}
