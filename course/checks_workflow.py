"""Checks for the workflow labs (6 tuning, 9 real time, 14 capstone); `checks` re-exports them.

Split from checks.py to keep each file short; the helpers (report, close_to) live there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from checks import Problem, Verdict, close_to, report

# ---- lab 06: tuning and validation ---------------------------------------------------------


def _best_so_far(values: Sequence[float]) -> list[float]:
    out, best = [], float("nan")
    for v in values:
        if not np.isnan(v) and (np.isnan(best) or v > best):
            best = float(v)
        out.append(best)
    return out


def lab06_best_so_far(answer: Any) -> Verdict:
    cases = [[0.01, 0.03, 0.02, 0.05], [float("nan"), 0.02, float("nan"), 0.01], [0.04, float("nan"), 0.05]]
    problems: list[Problem] = []
    for values in cases:
        try:
            got = [float(v) for v in answer(list(values))]
        except Exception as exc:  # noqa: BLE001 - a learner's code may fail in any way
            return report([(f"best_so_far({values}) 出错：{exc!r}", f"best_so_far({values}) raised {exc!r}")])
        want = _best_so_far(values)
        if len(got) != len(want):
            problems.append((f"best_so_far({values}) 应返回 {len(want)} 个数，得到 {len(got)} 个",
                             f"best_so_far({values}) should return {len(want)} numbers, got {len(got)}"))
        elif not np.allclose(got, want, equal_nan=True):
            if any(np.isnan(g) and not np.isnan(w) for g, w in zip(got, want, strict=True)):
                problems.append((f"best_so_far({values}) = {got}：有了完成的试验之后，最好值不该再是 NaN"
                                 "（被剪枝的试验要跳过）",
                                 f"best_so_far({values}) = {got}: after a completed trial the best so far is never "
                                 "NaN (skip pruned trials)"))
            else:
                problems.append((f"best_so_far({values}) = {got}，应为 {want}",
                                 f"best_so_far({values}) = {got}, expected {want}"))
            break
    return report(problems)


def _stop_epoch(valid: Sequence[float], patience: int) -> tuple[int, int]:
    """The training loop's rule (training/loop.py): strictly better resets, `patience` misses stop."""
    best, best_epoch, bad = -np.inf, 0, 0
    for epoch, v in enumerate(valid, start=1):
        if v > best:
            best, best_epoch, bad = v, epoch, 0
            continue
        bad += 1
        if bad >= patience:
            return epoch, best_epoch
    return len(valid), best_epoch


def lab06_stop_epoch(answer: Any) -> Verdict:
    cases = [([0.01, 0.02, 0.015, 0.018, 0.03, 0.01], 2), ([0.01, 0.02, 0.02, 0.02, 0.05], 2),
             ([0.03, 0.02, 0.04, 0.01, 0.02, 0.05], 3), ([0.01, 0.02, 0.03], 1)]
    problems: list[Problem] = []
    for valid, patience in cases:
        try:
            got = tuple(int(x) for x in answer(list(valid), patience))
        except Exception as exc:  # noqa: BLE001
            return report([(f"stop_epoch 出错：{exc!r}", f"stop_epoch raised {exc!r}")])
        want = _stop_epoch(valid, patience)
        if got == want:
            continue
        hint_zh, hint_en = "", ""
        if valid == [0.01, 0.02, 0.02, 0.02, 0.05] and got[1] != want[1]:
            hint_zh, hint_en = "：和最好值相等不算进步", ": a score equal to the best is no improvement"
        elif got[0] == len(valid) and want[0] < len(valid):
            hint_zh, hint_en = "：早停在最后一轮之前就该触发", ": early stopping should trigger before the last epoch"
        problems.append((f"stop_epoch({valid}, patience={patience}) = {got}，应为 {want}{hint_zh}",
                         f"stop_epoch({valid}, patience={patience}) = {got}, expected {want}{hint_en}"))
        break
    return report(problems)


def lab06_seed_summary(answer: Any) -> Verdict:
    x = [0.031, 0.034, 0.029, 0.036]
    try:
        mean, sd, (low, high) = answer(list(x))
        mean, sd, low, high = float(mean), float(sd), float(low), float(high)
    except Exception as exc:  # noqa: BLE001
        return report([(f"seed_summary 应返回 (均值, 标准差, (下界, 上界))：{exc!r}",
                         f"seed_summary should return (mean, sd, (low, high)): {exc!r}")])
    from scipy import stats

    want_sd = float(np.std(x, ddof=1))
    want_low, want_high = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    problems = close_to(mean, float(np.mean(x)), ("均值", "mean"), rel=1e-6)
    if np.isclose(sd, np.std(x), rtol=1e-6):
        problems.append(("标准差除以了 n：样本标准差要除以 n−1（ddof=1）",
                         "the sd divides by n: the sample standard deviation divides by n - 1 (ddof=1)"))
    else:
        problems += close_to(sd, want_sd, ("标准差", "sd"), rel=1e-4)
    if not (np.isclose(low, want_low, rtol=1e-4) and np.isclose(high, want_high, rtol=1e-4)):
        half = (high - low) / 2
        if np.isclose(half, 1.96 * sd, rtol=1e-3) or np.isclose(half, 1.96 * want_sd, rtol=1e-3):
            problems.append(("区间用了 ±1.96·sd：均值的区间要用标准误 sd/√n，和 t 分布（自由度 n−1）的分位数",
                             "the interval is ±1.96·sd: the mean's interval uses the standard error sd/√n and "
                             "the t quantile with n − 1 degrees of freedom"))
        else:
            problems.append((f"区间 ({low:.5f}, {high:.5f}) 不对，应为 ({want_low:.5f}, {want_high:.5f})",
                             f"interval ({low:.5f}, {high:.5f}) is wrong, expected ({want_low:.5f}, {want_high:.5f})"))
    return report(problems)


# ---- lab 09: real time and cold start ------------------------------------------------------


def lab09_events(answer: Any, batch_model: Any) -> Verdict:
    items = ["101", "202", "303"]
    try:
        body = answer("u-7", list(items))
        batch_model.model_validate(body)
    except Exception as exc:  # noqa: BLE001 - a learner's code may fail in any way
        first = str(exc).splitlines()[:3]
        return report([("请求体不符合 POST /v1/events 的格式：" + " / ".join(first),
                        "the body does not match POST /v1/events: " + " / ".join(first))])
    events = body["events"]
    problems: list[Problem] = []
    if [e.get("item_id") for e in events] != items:
        problems.append(("事件的商品应当按顺序一一对应 item_ids", "the events' item_id should follow item_ids in order"))
    if any(e.get("user_id") != "u-7" for e in events):
        problems.append(("每个事件的 user_id 都应当是传进来的用户", "every event's user_id should be the given user"))
    if any(e.get("event_type") != "view" for e in events):
        problems.append(("event_type 应当是 \"view\"", "event_type should be \"view\""))
    ids = [e.get("event_id") for e in events]
    if len(set(ids)) != len(ids):
        problems.append(("event_id 有重复：服务器会把重复的当作重发而丢掉",
                         "event_ids repeat: the server drops a repeated id as a resend"))
    else:
        again = [e.get("event_id") for e in answer("u-8", list(items))["events"]]
        if set(again) & set(ids):
            problems.append(("另一个用户的事件用了相同的 event_id：把用户也放进 id 里（或用 UUID）",
                             "another user's events reuse the same event_ids: put the user in the id (or use a UUID)"))
    return report(problems)


def _similar(vectors: np.ndarray, i: int, k: int) -> list[int]:
    scores = vectors @ vectors[i]
    scores[i] = -np.inf
    return [int(j) for j in np.argsort(-scores, kind="stable")[:k]]


def lab09_similar(answer: Any) -> Verdict:
    rng = np.random.default_rng(3)
    v = rng.normal(size=(30, 8))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    try:
        got = [int(j) for j in answer(v.copy(), 4, 5)]
    except Exception as exc:  # noqa: BLE001
        return report([(f"similar_by_content 出错：{exc!r}", f"similar_by_content raised {exc!r}")])
    want = _similar(v, 4, 5)
    if got == want:
        return report([])
    if len(got) != 5:
        return report([(f"要 5 个商品，得到 {len(got)} 个", f"asked for 5 items, got {len(got)}")])
    if 4 in got:
        return report([("结果里有商品自己：它和自己的余弦相似度是 1，要排除", "the item itself is in the result: its cosine "
                        "with itself is 1, exclude it")])
    if got == _similar(-v, 4, 5) or set(got) == set(np.argsort(v @ v[4])[:5].tolist()):
        return report([("这是最不相似的商品：按相似度从大到小排", "these are the least similar items: sort by similarity, "
                        "largest first")])
    if set(got) == set(want):
        return report([("商品对了，顺序不对：最相似的排第一", "right items, wrong order: most similar first")])
    return report([(f"得到 {got}，应为 {want}", f"got {got}, expected {want}")])


# ---- lab 14: capstone ----------------------------------------------------------------------


def _pairs(text: Any, what: Problem) -> tuple[dict[str, str], list[Problem]]:
    if not isinstance(text, str) or not text.strip():
        return {}, [(f"{what[0]}应当是 'a=b,c=d' 形式的字符串", f"{what[1]} should be a string like 'a=b,c=d'")]
    out: dict[str, str] = {}
    for pair in text.split(","):
        key, sep, value = (s.strip() for s in pair.partition("="))
        if not sep or not key or not value:
            return {}, [(f"{what[0]}里 {pair!r} 不是 名字=名字", f"{what[1]}: {pair!r} is not name=name")]
        out[key] = value
    return out, []


def _mapping_problems(got: dict[str, str], want: dict[str, str], what: Problem, left: Problem) -> list[Problem]:
    if got == want:
        return []
    flipped = {v: k for k, v in got.items()}
    if flipped == want or (set(flipped) & set(want) and not set(got) & set(want)):
        return [(f"{what[0]}方向反了：左边应当是{left[0]}", f"{what[1]} is the wrong way round: {left[1]} go on the left")]
    missing = sorted(set(want) - set(got))
    if missing:
        return [(f"{what[0]}缺少 {missing}", f"{what[1]} misses {missing}")]
    wrong = sorted(k for k in got if k in want and got[k] != want[k]) or sorted(set(got) - set(want))
    return [(f"{what[0]}里 {wrong} 对应得不对", f"{what[1]}: {wrong} map to the wrong thing")]


_LAB14_EVENTS = {"user_id": "customer", "item_id": "sku", "event_type": "action", "ts": "when"}
_LAB14_ITEMS = {"item_id": "sku", "title": "product_name", "brand": "maker", "category": "dept", "description": "blurb"}
_LAB14_TYPES = {"pv": "view", "cart": "cart", "buy": "purchase"}


def lab14_reference_maps() -> tuple[str, str, str]:
    """The right --map strings, so a learner's run goes on after a wrong answer to exercise 14.1."""
    return tuple(",".join(f"{k}={v}" for k, v in m.items()) for m in (_LAB14_EVENTS, _LAB14_ITEMS, _LAB14_TYPES))  # type: ignore[return-value]


def lab14_maps(event_map: Any, item_map: Any, type_map: Any, log: pd.DataFrame, products: pd.DataFrame) -> Verdict:
    """The three --map strings of `soutui data import generic` for the lab's shop files."""
    want_events, want_items, want_types = _LAB14_EVENTS, _LAB14_ITEMS, _LAB14_TYPES
    assert set(want_events.values()) <= set(log.columns) and set(want_items.values()) <= set(products.columns)
    assert set(want_types) == set(log["action"].unique())
    problems: list[Problem] = []
    soutui_names = ("soutui 的列名", "soutui's column names")
    for text, want, what, left in [
        (event_map, want_events, ("event_map", "event_map"), soutui_names),
        (item_map, want_items, ("item_map", "item_map"), soutui_names),
        (type_map, want_types, ("type_map", "type_map"), ("店家的取值", "the shop's values")),
    ]:
        got, bad = _pairs(text, what)
        problems += bad or _mapping_problems(got, want, what, left)
    return report(problems)


def lab14_pick(answer: Any, results: Sequence[dict[str, Any]]) -> Verdict:
    def run(model: str, valid: float, test: float) -> dict[str, Any]:
        return {"model": model, "metrics": {"valid": {"NDCG@10": valid}, "test": {"NDCG@10": test}}}

    made_up = [run("popularity", 0.20, 0.25), run("itemknn", 0.24, 0.22), run("mlp", 0.23, 0.21)]
    try:
        got, got_real = answer(made_up), answer(list(results))
    except Exception as exc:  # noqa: BLE001
        return report([(f"pick_model 出错：{exc!r}", f"pick_model raised {exc!r}")])
    want_real = max(results, key=lambda r: r["metrics"]["valid"]["NDCG@10"])["model"]
    if got == "popularity":
        return report([("这是测试集上最好的模型：在测试集上挑选，报出的测试分数就不再诚实（实验 6）",
                        "that is the best model on test: choosing on test makes its test score dishonest (lab 6)")])
    if got != "itemknn" or got_real != want_real:
        return report([(f"应当选验证集 NDCG@10 最高的模型（这里是 {want_real}）",
                        f"choose the model with the highest validation NDCG@10 (here {want_real})")])
    return report([])


def lab14_same_dept(answer: Any) -> Verdict:
    cases = [(["TVs", "TVs", "Cameras"], ["TVs", "Laptops", "Cameras", "TVs"], 0.75),
             (["Speakers"], ["Speakers", "Speakers", "Speakers", "Headphones", "TVs"], 0.6),
             (["TVs"], ["Laptops"], 0.0)]
    for history, recs, want in cases:
        try:
            got = answer(list(history), list(recs))
        except Exception as exc:  # noqa: BLE001
            return report([(f"same_dept_share 出错：{exc!r}", f"same_dept_share raised {exc!r}")])
        problems = close_to(got, want, (f"same_dept_share({history}, {recs})", f"same_dept_share({history}, {recs})"),
                            rel=1e-6) if want else ([] if got == 0 else [(
                                f"same_dept_share({history}, {recs}) 应为 0，得到 {got!r}",
                                f"same_dept_share({history}, {recs}) should be 0, got {got!r}")])
        if problems:
            if isinstance(got, (int, float)) and np.isclose(got, len(set(history) & set(recs)) / len(recs)):
                problems.append(("重复的品类要逐条计数：数的是推荐列表里的每一条，不是品类集合",
                                 "count every recommended item, repeats included, not the set of departments"))
            return report(problems)
    return report([])
