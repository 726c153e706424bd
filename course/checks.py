"""Checks for the labs' exercises: each says what is wrong with an answer, in Chinese and English.

A check prints a tick when the answer is right. When it is wrong it prints what is wrong
and returns False; under SOUTUI_COURSE_STRICT=1 (CI runs the labs with the solutions filled
in) it raises instead, so a broken solution or a changed engine fails the build.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

Problem = tuple[str, str]  # (zh, en)


class CheckFailed(AssertionError):
    """An exercise's answer is wrong (raised only in strict mode)."""


class Verdict:
    """True when the answer passed; shows nothing as a cell's last value (the printed lines say it)."""

    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return f"Verdict({self.ok})"

    def _ipython_display_(self) -> None:
        pass


def report(problems: Sequence[Problem]) -> Verdict:
    if not problems:
        print("✓ 正确 / correct")
        return Verdict(True)
    text = "\n".join(f"✗ {zh}\n  {en}" for zh, en in problems)
    if os.environ.get("SOUTUI_COURSE_STRICT") == "1":
        raise CheckFailed(text)
    print(text)
    return Verdict(False)


def _number(answer: Any, what: Problem) -> float | None:
    try:
        return float(answer)
    except (TypeError, ValueError):
        return None


def close_to(answer: Any, expected: float, name: Problem, rel: float = 1e-3) -> list[Problem]:
    """One number within `rel` relative error of `expected`."""
    value = _number(answer, name)
    if value is None:
        return [(f"{name[0]}应当是一个数，现在是 {answer!r}", f"{name[1]} should be a number, got {answer!r}")]
    if not np.isclose(value, expected, rtol=rel, atol=1e-12):
        hint = "大了" if value > expected else "小了"
        hint_en = "too large" if value > expected else "too small"
        return [(f"{name[0]} = {value:.6g}，{hint}（差 {abs(value / expected - 1):.1%}）",
                 f"{name[1]} = {value:.6g} is {hint_en} (off by {abs(value / expected - 1):.1%})")]
    return []


# ---- lab 01: setup and a first result ------------------------------------------------------


def lab01_density(answer: Any, stats: dict[str, float]) -> Verdict:
    expected = stats["interactions"] / (stats["users"] * stats["items"])
    problems = close_to(answer, expected, ("密度", "density"), rel=0.01)
    value = _number(answer, ("", ""))
    if problems and value is not None and np.isclose(value, stats["interactions"] / stats["users"], rtol=0.01):
        problems.append(("这是每个用户的平均交互数，不是密度：还要除以商品数",
                         "that is interactions per user, not density: divide by the number of items too"))
    return report(problems)


def lab01_fresh_top10(answer: Any, history: np.ndarray, scores: np.ndarray) -> Verdict:
    problems: list[Problem] = []
    items = np.asarray(list(answer) if answer is not None else [], dtype=np.int64)
    if len(items) != 10:
        problems.append((f"需要 10 个商品，现在有 {len(items)} 个", f"need 10 items, got {len(items)}"))
    seen = sorted(set(items.tolist()) & set(np.asarray(history).tolist()))
    if seen:
        problems.append((f"{len(seen)} 个商品用户已经买过：{seen[:5]}", f"{len(seen)} items are already in the history: {seen[:5]}"))
    if len(set(items.tolist())) != len(items):
        problems.append(("列表里有重复商品", "the list repeats an item"))
    if not problems:
        masked = scores.astype(np.float64).copy()
        masked[np.asarray(history, dtype=np.int64)] = -np.inf
        best = np.sort(masked)[::-1][:10]
        got = np.sort(masked[items])[::-1]
        if not np.allclose(got, best):
            problems.append(("这不是得分最高的 10 个新商品（按分数从高到低排序了吗？）",
                             "these are not the 10 best-scored new items (did you sort by score, highest first?)"))
    return report(problems)


# ---- lab 02: data processing ---------------------------------------------------------------


def lab02_dedupe(answer: Any, raw: pd.DataFrame, keys: Sequence[str]) -> Verdict:
    if not isinstance(answer, pd.DataFrame):
        return report([("答案应当是一个 DataFrame", f"the answer should be a DataFrame, got {type(answer).__name__}")])
    expected = raw.drop_duplicates(subset=list(keys), keep="first")
    problems: list[Problem] = []
    dupes = int(answer.duplicated(subset=list(keys)).sum())
    if dupes:
        problems.append((f"还剩 {dupes} 行重复（按 {list(keys)} 判断）", f"{dupes} duplicate rows remain (by {list(keys)})"))
    if len(answer) < len(expected):
        problems.append((f"删多了：应保留 {len(expected)} 行，只剩 {len(answer)} 行（只按部分列判断重复？）",
                         f"too many rows dropped: keep {len(expected)}, you kept {len(answer)} (deduplicated on fewer columns?)"))
    if not problems and not answer.index.equals(expected.index):
        problems.append(("应保留每组重复中的第一行（keep='first'）", "keep the first row of each duplicate group (keep='first')"))
    return report(problems)


def lab02_fill_ts(answer: Any, events: pd.DataFrame) -> Verdict:
    if not isinstance(answer, pd.Series):
        return report([("答案应当是一个 Series（补全后的时间戳）", "the answer should be a Series (the filled timestamps)")])
    medians = events.groupby("item_id")["timestamp"].transform("median")
    expected = events["timestamp"].fillna(medians)
    problems: list[Problem] = []
    left = int(answer.isna().sum())
    if left > int(expected.isna().sum()):
        problems.append((f"还有 {left} 个缺失值", f"{left} timestamps are still missing"))
    known = events["timestamp"].notna()
    if len(answer) != len(events):
        problems.append(("长度变了：不要删行，只补值", "the length changed: fill values, do not drop rows"))
    elif not np.allclose(answer[known].to_numpy(float), events.loc[known, "timestamp"].to_numpy(float)):
        problems.append(("已知的时间戳被改动了", "timestamps that were known have changed"))
    elif not left and not np.allclose(answer.to_numpy(float), expected.to_numpy(float), equal_nan=True):
        problems.append(("缺失值应当用同一商品时间戳的中位数填补，而不是全局值",
                         "fill with the median timestamp of the same item, not a global value"))
    return report(problems)


# ---- lab 03: splits and metrics ------------------------------------------------------------


def lab03_ndcg(answer: Any, k: int) -> Verdict:
    """`answer` is the learner's function ndcg(ranks, k) over 0-based ranks."""
    from soutui.evaluation.metrics import ndcg_from_ranks

    ranks = np.array([0, 1, 2, 9, 10, 50])
    try:
        got = answer(ranks, k)
    except Exception as e:  # noqa: BLE001 - the learner's code may fail in any way
        return report([(f"函数出错：{e!r}", f"the function raised {e!r}")])
    problems = close_to(got, ndcg_from_ranks(ranks, k), ("NDCG", "NDCG"), rel=1e-6)
    if problems:
        one = answer(np.array([0]), k)
        if np.isclose(float(one), 1 / np.log2(3)):
            problems.append(("排名从 0 开始：第一名的折扣是 1/log2(0+2) = 1", "ranks are 0-based: the first place is discounted by 1/log2(0+2) = 1"))
        if np.isclose(float(answer(np.array([k]), k)), 1 / np.log2(k + 2)):
            problems.append((f"排名 {k}（第 {k + 1} 位）已经在前 {k} 名之外，应当得 0", f"rank {k} (place {k + 1}) is outside the top {k}: it scores 0"))
    return report(problems)


def lab03_honest_counts(answer: Any, train_counts: np.ndarray, all_counts: np.ndarray) -> Verdict:
    counts = np.asarray(answer, dtype=np.float64) if answer is not None else np.zeros(0)
    if counts.shape != train_counts.shape:
        return report([(f"形状应为 {train_counts.shape}，现在是 {counts.shape}", f"shape should be {train_counts.shape}, got {counts.shape}")])
    if np.array_equal(counts, all_counts):
        return report([("这是在全部交互上数的：其中包括了验证和测试商品（泄漏）",
                        "these count every interaction, validation and test items included (the leak)")])
    diff = int((counts != train_counts).sum())
    return report([] if diff == 0 else [(f"{diff} 个商品的计数不对：只数训练部分（去掉每个用户最后两个）",
                                          f"{diff} items have wrong counts: count the training part only (drop each user's last two)")])


def lab03_sampled_hr(answer: Any, cand_scores: np.ndarray) -> Verdict:
    """`answer(s)` is the learner's sampled HR@10 over (users, 1 + negatives) scores, target in column 0."""
    s = np.asarray(cand_scores, dtype=np.float64)
    rank = (s[:, 1:] >= s[:, :1]).sum(axis=1)
    try:
        got = answer(s)
    except Exception as e:  # noqa: BLE001 - the learner's code may fail in any way
        return report([(f"函数出错：{e!r}", f"the function raised {e!r}")])
    problems = close_to(got, float((rank < 10).mean()), ("采样 HR@10", "sampled HR@10"), rel=1e-9)
    if problems and np.isclose(float(got), float(((s[:, 1:] > s[:, :1]).sum(axis=1) < 10).mean())):
        problems.append(("并列的负样本要算在目标前面（用 >=，不是 >）", "tied negatives count above the target (use >=, not >)"))
    if problems and np.isclose(float(got), float((rank <= 10).mean())):
        problems.append(("名次从 0 开始：前 10 名是 rank < 10", "ranks are 0-based: the top 10 is rank < 10"))
    return report(problems)


# ---- lab 04: the seed's MLP ----------------------------------------------------------------


def lab04_predict(answer: Any) -> Verdict:
    """`answer(outputs)` turns (B, 1) logits into (B,) 0/1 predictions."""
    import torch

    logits = torch.tensor([[2.0], [-1.0], [0.5], [-0.2]])
    try:
        got = torch.as_tensor(answer(logits))
    except Exception as e:  # noqa: BLE001 - the learner's code may fail in any way
        return report([(f"函数出错：{e!r}", f"the function raised {e!r}")])
    problems: list[Problem] = []
    if tuple(got.shape) != (4,):
        problems.append((f"形状应为 (B,)，现在是 {tuple(got.shape)}（用 [:, 0] 或 squeeze(1)）",
                         f"shape should be (B,), got {tuple(got.shape)} (use [:, 0] or squeeze(1))"))
    elif got.tolist() == [0, 0, 0, 0]:
        problems.append(("全是 0：对只有一列的输出做 torch.max(..., 1) 永远得到下标 0",
                         "all zeros: torch.max(..., 1) over a single column always returns index 0"))
    elif got.tolist() != [1, 0, 1, 0]:
        problems.append((f"预测 {got.tolist()}，应为 [1, 0, 1, 0]：logit > 0 预测 1",
                         f"predicted {got.tolist()}, expected [1, 0, 1, 0]: a logit > 0 predicts 1"))
    return report(problems)


def lab04_baseline(answer: Any, y_test: np.ndarray) -> Verdict:
    expected = float((np.asarray(y_test) == 0).mean())
    problems = close_to(answer, expected, ("永远预测“不买”的准确率", "always-no accuracy"), rel=1e-6)
    value = _number(answer, ("", ""))
    if problems and value is not None and np.isclose(value, 1 - expected):
        problems.append(("这是正样本的比例；永远预测“不买”在负样本上全对",
                         "that is the share of positives; always predicting no is right on every negative"))
    return report(problems)


# ---- lab 08: deployment and inference ------------------------------------------------------


def _top10_share(a: np.ndarray, b: np.ndarray) -> float:
    top_a, top_b = np.argsort(-a, axis=1)[:, :10], np.argsort(-b, axis=1)[:, :10]
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(top_a, top_b, strict=True)]))


def lab08_top10_agreement(answer: Any) -> Verdict:
    """`answer(a, b)` is the learner's mean top-10 overlap share of two (users, items) score matrices."""
    rng = np.random.default_rng(8)
    a = rng.normal(size=(20, 200))
    b = a + rng.normal(scale=0.3, size=a.shape) * np.where(a < 0, 3.0, 1.0)  # low scores move more
    try:
        got = answer(a, b)
        same = answer(a, a.copy())
    except Exception as e:  # noqa: BLE001 - the learner's code may fail in any way
        return report([(f"函数出错：{e!r}", f"the function raised {e!r}")])
    problems = close_to(got, _top10_share(a, b), ("前 10 名重合比例", "top-10 agreement"), rel=1e-6)
    value = _number(got, ("", ""))
    if problems and value is not None:
        if np.isclose(value, 10 * _top10_share(-a, -b)):
            problems.append(("两处不对：argsort 是升序（取到了最低的 10 个），而且要除以 10 变成比例",
                             "two things: argsort sorts ascending (the 10 lowest were taken), and divide by 10 for a share"))
        elif _number(same, ("", "")) == 10.0:
            problems.append(("返回的是重合的个数（0～10），要除以 10 变成比例", "that is a count (0-10): divide by 10 for a share"))
        elif np.isclose(value, _top10_share(-a, -b)):
            problems.append(("这是分数最低的 10 个：argsort 是升序，要按分数从高到低取",
                             "those are the 10 lowest scores: argsort sorts ascending, take the highest first"))
    return report(problems)


def lab08_p95(answer: Any, latencies_s: Sequence[float]) -> Verdict:
    lat = np.asarray(latencies_s, dtype=np.float64)
    expected = float(np.percentile(lat, 95) * 1000)
    problems = close_to(answer, expected, ("p95 延迟（毫秒）", "p95 latency (ms)"), rel=1e-6)
    value = _number(answer, ("", ""))
    if problems and value is not None:
        if np.isclose(value, expected / 1000):
            problems.append(("单位是秒：乘以 1000 换成毫秒", "that is in seconds: multiply by 1000 for milliseconds"))
        elif np.isclose(value, lat.mean()) or np.isclose(value, lat.mean() * 1000):
            problems.append(("这是平均值，不是第 95 百分位（np.percentile(..., 95)）",
                             "that is the mean, not the 95th percentile (np.percentile(..., 95))"))
        elif np.isclose(value, np.median(lat) * 1000):
            problems.append(("这是中位数（p50），要第 95 百分位", "that is the median (p50); the 95th percentile is asked"))
    return report(problems)


# ---- lab 07: search ------------------------------------------------------------------------


def _rrf(lists: Sequence[Sequence[int]], k: int = 60, start: int = 1, best_first: bool = True) -> list[int]:
    scores: dict[int, float] = {}
    for ranked in lists:
        for rank, item in enumerate(ranked, start=start):
            scores[int(item)] = scores.get(int(item), 0.0) + 1 / (k + rank)
    sign = -1 if best_first else 1
    return sorted(scores, key=lambda item: (sign * scores[item], item))


def lab07_rrf(answer: Any) -> Verdict:
    """`answer(lists, k)` is the learner's reciprocal-rank fusion of best-first item lists."""
    lists = [[8, 3, 4, 2, 7, 9], [9, 0, 7, 1, 5, 3], [2, 5, 8, 0, 3, 4]]  # 0-based ranks reorder these
    try:
        got = [int(x) for x in answer(lists, k=2)]
    except Exception as e:  # noqa: BLE001 - the learner's code may fail in any way
        return report([(f"函数出错：{e!r}", f"the function raised {e!r}")])
    expected = _rrf(lists, k=2)
    if got == expected:
        return report([])
    problems: list[Problem] = [(f"k=2 时融合结果是 {got}，应为 {expected}", f"with k=2 the fusion gives {got}, expected {expected}")]
    if sorted(got) != sorted(expected):
        problems.append(("结果应当包含每个列表里出现过的每个商品，且只出现一次", "the result holds every item of every list, once"))
    elif got in (_rrf(lists, 2, best_first=False), _rrf(lists, 2, start=0, best_first=False)):
        problems.append(("顺序反了：分数高的排在前面", "the order is reversed: highest score first"))
    if sorted(got) == sorted(expected) and got in (_rrf(lists, 2, start=0), _rrf(lists, 2, start=0, best_first=False)):
        problems.append(("名次从 1 开始：enumerate(ranked, start=1)", "ranks start at 1: enumerate(ranked, start=1)"))
    return report(problems)


def lab07_ndcg(answer: Any, reference: Any) -> Verdict:
    """`answer(ranked, rels)` is the learner's graded NDCG@10; `reference(ranked, rels, k)` soutui's."""
    rels = {"a": 2.0, "b": 1.0, "c": 0.0, "d": 2.0, "e": 1.0}
    cases = [["c", "a", "x", "b", "y"], ["a", "d", "b", "e"], ["x", "y"], [*"xyzuvwpqrs", "a"]]
    try:
        got = [float(answer(r, rels)) for r in cases]
        empty = float(answer(["a"], {"a": 0.0}))
    except Exception as e:  # noqa: BLE001 - the learner's code may fail in any way
        return report([(f"函数出错：{e!r}", f"the function raised {e!r}")])
    want = [float(reference(r, rels, 10)) for r in cases]
    if np.allclose(got, want, atol=1e-9) and empty == 0.0:
        return report([])
    problems: list[Problem] = [(f"四个测试排序得到 {np.round(got, 4).tolist()}，应为 {np.round(want, 4).tolist()}",
                                f"four test rankings give {np.round(got, 4).tolist()}, expected {np.round(want, 4).tolist()}")]
    if np.allclose(got, [float(reference(r, rels, 10, exponential=False)) for r in cases]):
        problems.append(("增益要用 2^g − 1，不是 g", "the gain is 2^g - 1, not g"))
    elif max(got) > 1 + 1e-9:
        problems.append(("NDCG 不会大于 1：要除以理想 DCG", "NDCG is never above 1: divide by the ideal DCG"))
    elif got[3] > 0:
        problems.append(("只看前 10 个位置", "only the first 10 positions count"))
    if empty != 0.0:
        problems.append(("没有正增益时理想 DCG 为 0，应返回 0", "with no positive gain the ideal DCG is 0: return 0"))
    return report(problems)


# ---- lab 05: the big model -----------------------------------------------------------------


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool = True, scale: bool = True) -> np.ndarray:
    s = q @ k.T / (np.sqrt(q.shape[1]) if scale else 1.0)
    if causal:
        s = np.where(np.tril(np.ones(s.shape, dtype=bool)), s, -np.inf)
    w = np.exp(s - s.max(axis=1, keepdims=True))
    return w / w.sum(axis=1, keepdims=True) @ v  # type: ignore[no-any-return]


def lab05_attention(answer: Any) -> Verdict:
    """`answer(q, k, v)` is the learner's causal scaled dot-product attention over (T, d) arrays."""
    rng = np.random.default_rng(5)
    q, k, v = (rng.normal(size=(5, 4)) for _ in range(3))
    try:
        got = np.asarray(answer(q, k, v), dtype=np.float64)
    except Exception as e:  # noqa: BLE001 - the learner's code may fail in any way
        return report([(f"函数出错：{e!r}", f"the function raised {e!r}")])
    if got.shape != (5, 4):
        return report([(f"形状应为 (T, d) = (5, 4)，现在是 {got.shape}", f"shape should be (T, d) = (5, 4), got {got.shape}")])
    if np.allclose(got, _attention(q, k, v)):
        return report([])
    problems: list[Problem] = [("结果和因果注意力不一致", "the result differs from causal attention")]
    if np.allclose(got, _attention(q, k, v, causal=False)) or np.allclose(got, _attention(q, k, v, False, False)):
        problems.append(("没有遮住未来：j > t 的分数要设为 −∞（np.tril 做掩码）",
                         "the future is not hidden: set scores with j > t to -inf (np.tril makes the mask)"))
    elif np.allclose(got, _attention(q, k, v, scale=False)):
        problems.append(("分数要除以 √d", "divide the scores by sqrt(d)"))
    elif not np.isfinite(got).all():
        problems.append(("结果里有 NaN：每行至少保留一个位置（对角线），减去行最大值再取 exp",
                         "NaN in the result: keep at least the diagonal per row, subtract the row max before exp"))
    return report(problems)


def _xent(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return log_z - logits[np.arange(len(targets)), targets]  # type: ignore[no-any-return]


def lab05_softmax_loss(answer: Any) -> Verdict:
    """`answer(logits, targets)` is the learner's mean full-softmax cross-entropy."""
    rng = np.random.default_rng(6)
    small, targets = rng.normal(size=(4, 50)), np.array([0, 7, 49, 3])
    large = small * 400  # scores near 1000: exp overflows without log-sum-exp
    try:
        with np.errstate(all="ignore"):
            got_small, got_large = float(answer(small, targets)), float(answer(large, targets))
    except Exception as e:  # noqa: BLE001 - the learner's code may fail in any way
        return report([(f"函数出错：{e!r}", f"the function raised {e!r}")])
    problems = close_to(got_small, float(_xent(small, targets).mean()), ("交叉熵", "cross-entropy"), rel=1e-6)
    if problems and np.isclose(got_small, float(_xent(small, targets).sum())):
        problems.append(("这是总和：要对 batch 取平均", "that is the sum: take the mean over the batch"))
    if not problems:
        if not np.isfinite(got_large):
            problems.append(("分数很大时得到 inf/NaN：先减去每行最大值（log-sum-exp）",
                             "large scores give inf/NaN: subtract each row's max first (log-sum-exp)"))
        else:
            problems += close_to(got_large, float(_xent(large, targets).mean()), ("大分数时的交叉熵", "cross-entropy at large scores"), rel=1e-6)
    return report(problems)


# the workflow labs' checks (6, 9, 14) live in checks_workflow.py, labs 10 and 12 in checks_ops.py
from checks_ops import lab10_occlusion, lab10_top_beats_random, lab12_psi, lab12_team_draft  # noqa: E402, F401
from checks_workflow import (  # noqa: E402, F401 - re-exported: the labs call checks.<name>
    lab06_best_so_far,
    lab06_seed_summary,
    lab06_stop_epoch,
    lab09_events,
    lab09_similar,
    lab14_maps,
    lab14_pick,
    lab14_reference_maps,
    lab14_same_dept,
)
