"""Checks for lab 13 (scale): candidate recall of an ANN index, and the memory of the served item tables.

Each check calls the learner's function on fixed cases, compares with the reference here, and says
in Chinese and English what is wrong (common mistakes are recognised by the number they give).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from checks import Problem, Verdict, report

MIB = 2**20

# ---- exercise 13.1: recall of the candidates ------------------------------------------------


def candidate_recall(candidates: Any, exact_top: Any, k: int) -> float:
    """Mean over queries of |candidates[q] ∩ exact_top[q][:k]| / k (faiss pads candidates with -1)."""
    found = [len({int(c) for c in cand if c >= 0} & {int(e) for e in top[:k]}) / k
             for cand, top in zip(candidates, exact_top, strict=True)]
    return float(np.mean(found))


RECALL_CASES: list[tuple[list[list[int]], list[list[int]], int]] = [
    # (candidates per query, exact top items per query in order, k)
    ([[3, 1, 2]], [[1, 2, 3]], 3),
    ([[5, 9, 1, 7]], [[1, 2, 3, 4]], 2),
    ([[0, 1, 2, 3, 4, 5, 6, 7], [10, 11, 12, -1, -1, -1, -1, -1]], [[7, 8, 9, 0], [12, 13, 10, 11]], 4),
    ([[4, 8, 15, 16, 23, 42], [1, 2, 3, 4, 5, 6], [42, 23, 16, 15, 8, 4]], [[4, 8, 99], [7, 1, 8], [1, 2, 3]], 2),
    ([[1, 2, 3, 4], [5, 6, 7, 8]], [[9, 1, 2, 3], [5, 0, 6, 7]], 2),
]


def _recall_mistake(answer_value: float, cands: list[list[int]], tops: list[list[int]], k: int) -> Problem | None:
    """A recognised wrong formula, by the number it gives."""
    overlap = [len({c for c in cand if c >= 0} & set(top[:k])) for cand, top in zip(cands, tops, strict=True)]
    whole = [len({c for c in cand if c >= 0} & set(top)) for cand, top in zip(cands, tops, strict=True)]
    guesses: list[tuple[float, Problem]] = [
        (float(np.mean([o / len(c) for o, c in zip(overlap, cands, strict=True)])),
         ("分母应该是 k（要找回的精确前 k 个），不是候选的个数", "divide by k (the exact top k to be found), not by the number of candidates")),
        (float(np.sum(overlap)) / k,
         ("要对查询取平均，不是求和", "average over the queries, do not sum them")),
        (float(np.mean([w / k for w in whole])),
         ("精确列表只取前 k 个（exact_top[q][:k]）", "take only the first k of the exact list (exact_top[q][:k])")),
        (float(np.mean([len(set(c[:k]) & set(t[:k])) / k for c, t in zip(cands, tops, strict=True)])),
         ("候选要全部算上，不要只看前 k 个：服务端对所有候选都精确重新打分",
          "count every candidate, not just its first k: the server re-scores all of them exactly")),
    ]
    for value, problem in guesses:
        if abs(answer_value - value) < 1e-9:
            return problem
    return None


def lab13_recall(answer: Any) -> Verdict:
    """Exercise 13.1: `answer(candidates, exact_top, k)` is the mean candidate recall@k."""
    for cands, tops, k in RECALL_CASES:
        want = candidate_recall(cands, tops, k)
        shown = f"recall(candidates={cands}, exact_top={tops}, k={k})"
        try:
            got = float(answer(np.array(cands), np.array(tops), k))
        except Exception as exc:  # noqa: BLE001 - a learner's code may fail in any way
            return report([(f"{shown} 出错：{exc!r}", f"{shown} raised {exc!r}")])
        if abs(got - want) <= 1e-9:
            continue
        problem = _recall_mistake(got, cands, tops, k)
        head = (f"{shown} = {got:.4g}，应为 {want:.4g}", f"{shown} = {got:.4g}, expected {want:.4g}")
        if problem is None:
            return report([head])
        return report([(f"{head[0]}：{problem[0]}", f"{head[1]}: {problem[1]}")])
    return report([])


# ---- exercise 13.2: memory of the served item tables ----------------------------------------


def serving_tables_mib(items: int, d: int) -> float:
    """MiB of the item tables an ANN-serving worker holds for a SASRec of width d (docs/scaling.md):
    4 float32 tables of I x d (the two ONNX graphs' item tables, the item vectors and their normalised
    copy), 2 float32 tables of I x (d + 1) (item_index.npy and the IVF-Flat index's copy of it) and
    the index's int64 id per item. The IVF centroids (4 sqrt(I) rows) are left out: under 1 MiB."""
    return (4 * items * d * 4 + 2 * items * (d + 1) * 4 + items * 8) / MIB


MEMORY_CASES = [(1_000_000, 64), (50_000, 64), (200_000, 128), (3_000, 16)]


def _memory_mistake(got: float, items: int, d: int) -> Problem | None:
    want = serving_tables_mib(items, d)
    guesses: list[tuple[float, Problem]] = [
        (want * MIB / 1e6, ("1 MiB 是 2^20 = 1,048,576 字节，不是 10^6", "1 MiB is 2^20 = 1,048,576 bytes, not 10^6")),
        (want / 4, ("float32 每个数 4 字节", "a float32 takes 4 bytes")),
        (want / 1024, ("要的是 MiB，不是 GiB", "the answer is in MiB, not GiB")),
        ((4 * items * d * 4 + 2 * items * (d + 1) * 4) / MIB,  # the same number as d columns instead of d + 1
         ("少了每个商品 8 字节：IVF 索引给每个商品存一个 int64 编号，item_index.npy 和 IVF 索引每行是 d + 1 列（向量加偏置）",
          "8 bytes per item are missing: the IVF index stores an int64 id per item, and item_index.npy and the IVF "
          "index have d + 1 columns a row (the vector and a bias)")),
        ((2 * items * d * 4 + 2 * items * (d + 1) * 4 + items * 8) / MIB,
         ("I × d 的表有 4 张：两个 ONNX 图各一张、商品向量和它的归一化副本", "there are 4 tables of I × d: one in each ONNX graph, the item vectors and their normalised copy")),
        ((4 * items * d * 4 + items * (d + 1) * 4 + items * 8) / MIB,
         ("I × (d + 1) 的表有 2 张：item_index.npy 和 IVF 索引里的副本", "there are 2 tables of I × (d + 1): item_index.npy and the IVF index's copy")),
    ]
    for value, problem in guesses:
        if abs(got - value) <= 1e-6 * max(1.0, value):
            return problem
    return None


def lab13_memory(answer: Any) -> Verdict:
    """Exercise 13.2: `answer(items, d)` is serving_tables_mib(items, d)."""
    for items, d in MEMORY_CASES:
        want = serving_tables_mib(items, d)
        shown = f"tables_mib({items:,}, d={d})"
        try:
            got = float(answer(items, d))
        except Exception as exc:  # noqa: BLE001 - a learner's code may fail in any way
            return report([(f"{shown} 出错：{exc!r}", f"{shown} raised {exc!r}")])
        if abs(got - want) <= 1e-6 * max(1.0, want):
            continue
        head = (f"{shown} = {got:,.2f}，应为 {want:,.2f}", f"{shown} = {got:,.2f}, expected {want:,.2f}")
        problem = _memory_mistake(got, items, d)
        if problem is None:
            return report([head])
        return report([(f"{head[0]}：{problem[0]}", f"{head[1]}: {problem[1]}")])
    return report([])


# ---- the exactly-once count (shown in the lab, checked here) ---------------------------------


def exactly_once(posted: Sequence[Sequence[str]], stored: Sequence[str], new_counts: Sequence[int]) -> list[Problem]:
    """What is wrong with a store after several writers: missing ids, duplicated ids, and whether the
    writers' "new" counts add up to the distinct ids (each event counted new by exactly one writer)."""
    want = {e for batch in posted for e in batch}
    seen: dict[str, int] = {}
    for e in stored:
        seen[e] = seen.get(e, 0) + 1
    problems: list[Problem] = []
    missing = sorted(want - set(seen))
    doubled = sorted(e for e, n in seen.items() if n > 1)
    if missing:
        problems.append((f"{len(missing)} 个事件没有存下，例如 {missing[:3]}", f"{len(missing)} events were not stored, e.g. {missing[:3]}"))
    if doubled:
        problems.append((f"{len(doubled)} 个事件存了不止一次，例如 {doubled[:3]}", f"{len(doubled)} events were stored more than once, e.g. {doubled[:3]}"))
    if sum(new_counts) != len(want):
        problems.append((f"各进程报告的新事件数之和 {sum(new_counts)} 不等于不同事件数 {len(want)}",
                         f"the writers' new-event counts add up to {sum(new_counts)}, not to the {len(want)} distinct events"))
    return problems


def lab13_exactly_once(posted: Sequence[Sequence[str]], stored: Sequence[str], new_counts: Sequence[int]) -> Verdict:
    return report(exactly_once(posted, stored, new_counts))
