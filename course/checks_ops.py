"""Checks for the operations labs (12 monitoring and experiments); `checks` re-exports them.

Split from checks.py to keep each file short; the helpers (report, close_to) live there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from checks import Problem, Verdict, report

# ---- lab 12: monitoring and experiments ----------------------------------------------------

PSI_CASES = [  # (expected counts, actual counts)
    ([50, 30, 20], [30, 30, 40]),
    ([0.1] * 10, [0.2, 0.15, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.1, 0.05]),
    ([500, 300, 200], [5, 3, 2]),
    ([70, 30, 0], [60, 30, 10]),
]


def _psi(expected: Sequence[float], actual: Sequence[float], floor: float = 1e-4) -> float:
    e, a = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    e = np.maximum(e / e.sum(), floor)
    a = np.maximum(a / a.sum(), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def lab12_psi(answer: Any) -> Verdict:
    for expected, actual in PSI_CASES:
        want = _psi(expected, actual)
        try:
            got = float(answer(list(expected), list(actual)))
        except Exception as exc:  # noqa: BLE001 - a learner's code may fail in any way
            return report([(f"psi({expected}, {actual}) 出错：{exc!r}", f"psi({expected}, {actual}) raised {exc!r}")])
        if abs(got - want) <= 1e-6 * max(1.0, abs(want)):
            continue
        shown = f"psi({expected}, {actual}) = {got:.6g}"
        e, a = np.asarray(expected, float), np.asarray(actual, float)
        if not np.isfinite(got):
            return report([(f"{shown}：空的箱子要先把份额抬到下限 1e-4，否则 ln(0) 是无穷",
                            f"{shown}: raise a share to the 1e-4 floor before the log, else ln(0) is infinite")])
        if abs(got - float(np.sum((a - e) * np.log(np.maximum(a, 1e-4) / np.maximum(e, 1e-4))))) < 1e-9:
            return report([(f"{shown}：先把两边各自归一成份额（除以各自的总数）再算",
                            f"{shown}: turn each side into shares first (divide by its own total)")])
        if abs(got + want) < 1e-9 or abs(got - _kl(e, a)) < 1e-9 or abs(got - _kl(a, e)) < 1e-9:
            return report([(f"{shown}，应为 {want:.6g}：每一项是 (a − e)·ln(a / e)，不是单向的 KL",
                            f"{shown}, expected {want:.6g}: each term is (a − e)·ln(a / e), not a one-way KL")])
        return report([(f"{shown}，应为 {want:.6g}", f"{shown}, expected {want:.6g}")])
    return report([])


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p = np.maximum(p / p.sum(), 1e-4)
    q = np.maximum(q / q.sum(), 1e-4)
    return float(np.sum(p * np.log(p / q)))


def team_draft(a: Sequence[str], b: Sequence[str], coins: Sequence[str], k: int) -> list[tuple[str, str]]:
    """Team-draft interleaving (docs/experiments.md): fewer picks go next, a coin ("a"/"b") breaks ties."""
    shown: list[tuple[str, str]] = []
    seen: set[str] = set()
    picks = {"a": 0, "b": 0}
    lists = {"a": list(a), "b": list(b)}
    flips = iter(coins)
    while len(shown) < k:
        left = {t: [x for x in lists[t] if x not in seen] for t in "ab"}
        if not left["a"] and not left["b"]:
            break
        if picks["a"] != picks["b"]:
            team = "a" if picks["a"] < picks["b"] else "b"
        else:
            team = next(flips)
        if not left[team]:
            team = "b" if team == "a" else "a"
        item = left[team][0]
        shown.append((item, team))
        seen.add(item)
        picks[team] += 1
    return shown


INTERLEAVE_CASES = [  # (list a, list b, coins, k)
    (["p1", "p2", "p3", "p4"], ["p2", "p5", "p1", "p6"], ["b", "a"], 4),
    (["x", "y", "z"], ["x", "y", "z"], ["a", "b"], 3),
    (["m1", "m2", "m3", "m4", "m5"], ["n1", "m1", "n2", "n3", "n4"], ["a", "a", "b"], 6),
]


def lab12_team_draft(answer: Any) -> Verdict:
    for a, b, coins, k in INTERLEAVE_CASES:
        want = team_draft(a, b, coins, k)
        try:
            got = [(str(i), str(t)) for i, t in answer(list(a), list(b), list(coins), k)]
        except Exception as exc:  # noqa: BLE001
            return report([(f"interleave 出错：{exc!r}", f"interleave raised {exc!r}")])
        if got == want:
            continue
        case = f"a={a}, b={b}, coins={coins}, k={k}"
        items = [i for i, _ in got]
        problems: list[Problem] = []
        if len(set(items)) != len(items):
            problems.append((f"{case}：同一个商品出现了两次，每队选的是还没展示过的最高排名商品",
                             f"{case}: an item is shown twice; each team picks its best item not shown yet"))
        elif len(got) != len(want):
            problems.append((f"{case}：应有 {len(want)} 个结果，得到 {len(got)} 个",
                             f"{case}: expected {len(want)} results, got {len(got)}"))
        elif items == [i for i, _ in want]:
            problems.append((f"{case}：商品对了，队伍标记不对：每个商品记在选它的那一队",
                             f"{case}: right items, wrong teams: credit each item to the team that picked it"))
        else:
            problems.append((f"{case}：得到 {got}，应为 {want}（选得少的队先选，平手时掷硬币，硬币按顺序用）",
                             f"{case}: got {got}, expected {want} (the team with fewer picks goes next; a tie "
                             "uses the next coin)"))
        return report(problems)
    return report([])


# ---- lab 10: explainability ----------------------------------------------------------------


def _occlusion(score: Any, history: list[str]) -> list[float]:
    full = float(score(history))
    return [full - float(score(history[:j] + history[j + 1 :])) for j in range(len(history))]


def lab10_occlusion(answer: Any) -> Verdict:
    terms = {"a": 2.0, "b": 0.5, "c": -0.3, "d": 1.25}
    additive = lambda items: 1.0 + sum(terms[i] for i in items)  # noqa: E731
    best = lambda items: max([terms[i] for i in items], default=0.0)  # noqa: E731 - not additive
    for name, score in (("additive", additive), ("max", best)):
        history = ["a", "b", "c", "d"]
        try:
            got = [float(w) for w in answer(score, list(history))]
        except Exception as exc:  # noqa: BLE001 - a learner's code may fail in any way
            return report([(f"occlusion_weights 出错：{exc!r}", f"occlusion_weights raised {exc!r}")])
        want = _occlusion(score, history)
        if len(got) == len(want) and np.allclose(got, want, atol=1e-9):
            continue
        if len(got) != len(want):
            return report([(f"每个历史位置一个权重：要 {len(want)} 个，得到 {len(got)} 个",
                            f"one weight per history position: expected {len(want)}, got {len(got)}")])
        if np.allclose(got, [-w for w in want], atol=1e-9):
            return report([("符号反了：权重是完整历史的分数减去去掉之后的分数",
                            "the sign is flipped: the weight is the full history's score minus the score without it")])
        if np.allclose(got, [float(score([h])) for h in history], atol=1e-9):
            return report([("这是只有这一个商品时的分数，不是去掉它以后分数降了多少",
                            "that is the score of the item alone, not how much the score drops without it")])
        return report([(f"{name} 打分器：得到 {np.round(got, 4).tolist()}，应为 {np.round(want, 4).tolist()}",
                        f"{name} scorer: got {np.round(got, 4).tolist()}, expected {np.round(want, 4).tolist()}")])
    return report([])


FALLS = ([5, 0, 12, 3, 3, 40, 0, 7], [1, 0, 2, 9, 3, 4, 2, 7])  # (fall after top removal, after random)


def _beats(top: Sequence[float], rand: Sequence[float]) -> float:
    t, r = np.asarray(top, float), np.asarray(rand, float)
    return float(np.mean(np.where(t > r, 1.0, np.where(t == r, 0.5, 0.0))))


def lab10_top_beats_random(answer: Any) -> Verdict:
    want = _beats(*FALLS)
    try:
        got = float(answer(list(FALLS[0]), list(FALLS[1])))
    except Exception as exc:  # noqa: BLE001
        return report([(f"top_beats_random 出错：{exc!r}", f"top_beats_random raised {exc!r}")])
    if abs(got - want) < 1e-9:
        return report([])
    t, r = np.asarray(FALLS[0]), np.asarray(FALLS[1])
    if abs(got - float(np.mean(t > r))) < 1e-9:
        return report([(f"得到 {got:.4f}，应为 {want:.4f}：名次相同的用户记 ½，不是 0",
                        f"got {got:.4f}, expected {want:.4f}: a tie counts ½, not 0")])
    if abs(got - float(np.mean(t < r) + 0.5 * np.mean(t == r))) < 1e-9:
        return report([(f"得到 {got:.4f}，应为 {want:.4f}：名次越大掉得越多，方向反了",
                        f"got {got:.4f}, expected {want:.4f}: a larger rank is a bigger fall; the comparison is reversed")])
    return report([(f"得到 {got:.4f}，应为 {want:.4f}", f"got {got:.4f}, expected {want:.4f}")])
