"""The exercise checks accept the right answer and say what is wrong with typical mistakes."""

from __future__ import annotations

import checks
import checks_workflow
import numpy as np
import pandas as pd
import pytest


@pytest.fixture(autouse=True)
def lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOUTUI_COURSE_STRICT", raising=False)


STATS = {"users": 22363.0, "items": 12101.0, "interactions": 198502.0}


def test_density(capsys: pytest.CaptureFixture[str]) -> None:
    assert checks.lab01_density(198502 / (22363 * 12101), STATS)
    assert not checks.lab01_density(198502 / 22363, STATS)
    assert "divide by the number of items" in capsys.readouterr().out
    assert not checks.lab01_density("a lot", STATS)


def test_strict_mode_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUTUI_COURSE_STRICT", "1")
    with pytest.raises(checks.CheckFailed, match="too large"):
        checks.lab01_density(0.5, STATS)


def test_fresh_top10(capsys: pytest.CaptureFixture[str]) -> None:
    scores = np.arange(30, dtype=float)
    history = np.array([29, 28])
    assert checks.lab01_fresh_top10(list(range(27, 17, -1)), history, scores)
    assert not checks.lab01_fresh_top10(list(range(29, 19, -1)), history, scores)
    assert "already in the history" in capsys.readouterr().out
    assert not checks.lab01_fresh_top10(list(range(18, 28)) [:9], history, scores)
    assert "need 10 items" in capsys.readouterr().out
    assert not checks.lab01_fresh_top10(list(range(10)), history, scores)
    assert "not the 10 best-scored" in capsys.readouterr().out


def test_dedupe(capsys: pytest.CaptureFixture[str]) -> None:
    raw = pd.DataFrame({"u": [1, 1, 1, 2], "i": [5, 5, 6, 5], "t": [0, 0, 0, 1]})
    assert checks.lab02_dedupe(raw.drop_duplicates(), raw, ["u", "i", "t"])
    assert not checks.lab02_dedupe(raw, raw, ["u", "i", "t"])
    assert "1 duplicate rows remain" in capsys.readouterr().out
    assert not checks.lab02_dedupe(raw.drop_duplicates(subset=["u"]), raw, ["u", "i", "t"])
    assert "too many rows dropped" in capsys.readouterr().out
    assert not checks.lab02_dedupe(raw.drop_duplicates(keep="last"), raw, ["u", "i", "t"])
    assert "keep the first row" in capsys.readouterr().out


def test_fill_ts(capsys: pytest.CaptureFixture[str]) -> None:
    ev = pd.DataFrame({"item_id": [1, 1, 1, 2, 2], "timestamp": [10.0, 20.0, None, 100.0, None]})
    right = pd.Series([10.0, 20.0, 15.0, 100.0, 100.0])
    assert checks.lab02_fill_ts(right, ev)
    assert not checks.lab02_fill_ts(ev["timestamp"].fillna(ev["timestamp"].median()), ev)
    assert "same item" in capsys.readouterr().out
    assert not checks.lab02_fill_ts(ev["timestamp"], ev)
    assert "still missing" in capsys.readouterr().out


def test_ndcg(capsys: pytest.CaptureFixture[str]) -> None:
    def right(r: np.ndarray, k: int) -> float:
        return float(np.where(r < k, 1 / np.log2(r + 2.0), 0.0).mean())

    def one_based(r: np.ndarray, k: int) -> float:
        return float(np.where(r < k, 1 / np.log2(r + 3.0), 0.0).mean())

    def inclusive(r: np.ndarray, k: int) -> float:
        return float(np.where(r <= k, 1 / np.log2(r + 2.0), 0.0).mean())

    assert checks.lab03_ndcg(right, 10)
    assert not checks.lab03_ndcg(one_based, 10)
    assert "ranks are 0-based" in capsys.readouterr().out
    assert not checks.lab03_ndcg(inclusive, 10)
    assert "outside the top 10" in capsys.readouterr().out


def test_honest_counts(capsys: pytest.CaptureFixture[str]) -> None:
    train, every = np.array([3, 1, 0]), np.array([4, 2, 1])
    assert checks.lab03_honest_counts(train.copy(), train, every)
    assert not checks.lab03_honest_counts(every.copy(), train, every)
    assert "validation and test items included" in capsys.readouterr().out


def test_sampled_hr(capsys: pytest.CaptureFixture[str]) -> None:
    s = np.zeros((2, 101))
    s[0, 0], s[1, 0] = 1.0, 0.0  # user 0: target alone on top; user 1: tied with every negative
    assert checks.lab03_sampled_hr(lambda x: float(((x[:, 1:] >= x[:, :1]).sum(1) < 10).mean()), s)
    assert not checks.lab03_sampled_hr(lambda x: float(((x[:, 1:] > x[:, :1]).sum(1) < 10).mean()), s)
    assert "use >=, not >" in capsys.readouterr().out


def test_predict(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    assert checks.lab04_predict(lambda o: (o[:, 0] > 0).long())
    assert not checks.lab04_predict(lambda o: torch.max(o.data, 1)[1])
    assert "single column always returns index 0" in capsys.readouterr().out
    assert not checks.lab04_predict(lambda o: (o > 0).long())
    assert "shape should be (B,)" in capsys.readouterr().out


def test_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    y = np.array([1, 0, 0, 0, 0])
    assert checks.lab04_baseline(0.8, y)
    assert not checks.lab04_baseline(0.2, y)
    assert "share of positives" in capsys.readouterr().out


def _overlap(a: np.ndarray, b: np.ndarray, descending: bool = True, share: bool = True) -> float:
    sign = -1 if descending else 1
    top_a, top_b = np.argsort(sign * a, axis=1)[:, :10], np.argsort(sign * b, axis=1)[:, :10]
    return float(np.mean([len(set(x) & set(y)) / (10 if share else 1) for x, y in zip(top_a, top_b, strict=True)]))


def test_top10_agreement(capsys: pytest.CaptureFixture[str]) -> None:
    assert checks.lab08_top10_agreement(_overlap)
    assert not checks.lab08_top10_agreement(lambda a, b: _overlap(a, b, share=False))
    assert "divide by 10" in capsys.readouterr().out
    assert not checks.lab08_top10_agreement(lambda a, b: _overlap(a, b, descending=False))
    assert "argsort sorts ascending" in capsys.readouterr().out
    assert not checks.lab08_top10_agreement(lambda a, b: _overlap(a, b, descending=False, share=False))
    assert "two things" in capsys.readouterr().out
    assert not checks.lab08_top10_agreement(lambda a, b: 1 / 0)
    assert "raised" in capsys.readouterr().out


def test_p95(capsys: pytest.CaptureFixture[str]) -> None:
    lat = list(np.random.default_rng(0).gamma(2.0, 0.002, size=200))
    assert checks.lab08_p95(np.percentile(lat, 95) * 1000, lat)
    assert not checks.lab08_p95(np.percentile(lat, 95), lat)
    assert "multiply by 1000" in capsys.readouterr().out
    assert not checks.lab08_p95(np.mean(lat), lat)
    assert "the mean" in capsys.readouterr().out
    assert not checks.lab08_p95(np.median(lat) * 1000, lat)
    assert "the median" in capsys.readouterr().out


def _fuse(lists: list[list[int]], k: int = 60, start: int = 1, best_first: bool = True) -> list[int]:
    scores: dict[int, float] = {}
    for ranked in lists:
        for rank, item in enumerate(ranked, start=start):
            scores[item] = scores.get(item, 0.0) + 1 / (k + rank)
    return sorted(scores, key=lambda item: ((-1 if best_first else 1) * scores[item], item))


def test_rrf(capsys: pytest.CaptureFixture[str]) -> None:
    assert checks.lab07_rrf(_fuse)
    assert not checks.lab07_rrf(lambda lists, k: _fuse(lists, k, best_first=False))
    assert "highest score first" in capsys.readouterr().out
    assert not checks.lab07_rrf(lambda lists, k: _fuse(lists, k, start=0))
    assert "ranks start at 1" in capsys.readouterr().out
    assert not checks.lab07_rrf(lambda lists, k: lists[0])
    assert "every item of every list" in capsys.readouterr().out


def test_graded_ndcg(capsys: pytest.CaptureFixture[str]) -> None:
    from soutui.evaluation.metrics import ndcg_at_k

    assert checks.lab07_ndcg(lambda ranked, rels: ndcg_at_k(ranked, rels, 10), ndcg_at_k)
    assert not checks.lab07_ndcg(lambda ranked, rels: ndcg_at_k(ranked, rels, 10, exponential=False), ndcg_at_k)
    assert "2^g - 1" in capsys.readouterr().out
    assert not checks.lab07_ndcg(lambda ranked, rels: ndcg_at_k(ranked, rels, 11), ndcg_at_k)
    assert "first 10 positions" in capsys.readouterr().out
    unnormalised = lambda ranked, rels: sum(2 ** rels.get(i, 0) - 1 for i in ranked[:10])  # noqa: E731
    assert not checks.lab07_ndcg(unnormalised, ndcg_at_k)
    assert "divide by the ideal DCG" in capsys.readouterr().out


def test_causal_attention(capsys: pytest.CaptureFixture[str]) -> None:
    assert checks.lab05_attention(checks._attention)
    assert not checks.lab05_attention(lambda q, k, v: checks._attention(q, k, v, causal=False))
    assert "the future is not hidden" in capsys.readouterr().out
    assert not checks.lab05_attention(lambda q, k, v: checks._attention(q, k, v, scale=False))
    assert "sqrt(d)" in capsys.readouterr().out
    assert not checks.lab05_attention(lambda q, k, v: checks._attention(q, k, v)[:, :2])
    assert "shape should be" in capsys.readouterr().out


def test_full_softmax_loss(capsys: pytest.CaptureFixture[str]) -> None:
    def naive(logits: np.ndarray, targets: np.ndarray) -> float:
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return float(-np.log(p[np.arange(len(targets)), targets]).mean())

    assert checks.lab05_softmax_loss(lambda x, t: checks._xent(x, t).mean())
    assert not checks.lab05_softmax_loss(lambda x, t: checks._xent(x, t).sum())
    assert "take the mean" in capsys.readouterr().out
    assert not checks.lab05_softmax_loss(naive)
    assert "log-sum-exp" in capsys.readouterr().out


# ---- lab 06 / 09 ----------------------------------------------------------------------------


def test_best_so_far(capsys: pytest.CaptureFixture[str]) -> None:
    def right(values: list[float]) -> list[float]:
        return list(pd.Series(values).cummax().ffill())  # cummax leaves NaN where the trial is NaN

    assert checks.lab06_best_so_far(right)
    assert not checks.lab06_best_so_far(lambda v: list(np.maximum.accumulate(v)))
    assert "skip pruned trials" in capsys.readouterr().out
    assert not checks.lab06_best_so_far(lambda v: list(v))
    assert "expected" in capsys.readouterr().out


def test_stop_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    def right(valid: list[float], patience: int) -> tuple[int, int]:
        return checks_workflow._stop_epoch(valid, patience)

    assert checks.lab06_stop_epoch(right)
    assert not checks.lab06_stop_epoch(lambda v, p: (len(v), int(np.argmax(v)) + 1))
    assert "should trigger before the last epoch" in capsys.readouterr().out

    def ties_improve(valid: list[float], patience: int) -> tuple[int, int]:
        best, best_epoch, bad = -1.0, 0, 0
        for epoch, v in enumerate(valid, start=1):
            if v >= best:
                best, best_epoch, bad = v, epoch, 0
            else:
                bad += 1
                if bad >= patience:
                    return epoch, best_epoch
        return len(valid), best_epoch

    assert not checks.lab06_stop_epoch(ties_improve)
    assert "equal to the best is no improvement" in capsys.readouterr().out


def test_stop_epoch_matches_the_training_loop() -> None:
    from soutui.training.loop import TrainConfig  # the rule the lab teaches is the engine's

    assert "patience" in TrainConfig.__dataclass_fields__
    assert checks_workflow._stop_epoch([0.1, 0.2, 0.2, 0.1], 2) == (4, 2)
    assert checks_workflow._stop_epoch([0.3, 0.2, 0.1], 5) == (3, 1)


def test_seed_summary(capsys: pytest.CaptureFixture[str]) -> None:
    from scipy import stats

    def right(x: list[float]) -> tuple[float, float, tuple[float, float]]:
        low, high = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
        return float(np.mean(x)), float(np.std(x, ddof=1)), (low, high)

    assert checks.lab06_seed_summary(right)

    def population_sd(x: list[float]) -> tuple[float, float, tuple[float, float]]:
        m, s, ci = right(x)
        return m, float(np.std(x)), ci

    assert not checks.lab06_seed_summary(population_sd)
    assert "ddof=1" in capsys.readouterr().out

    def normal_sd(x: list[float]) -> tuple[float, float, tuple[float, float]]:
        m, s, _ = right(x)
        return m, s, (m - 1.96 * s, m + 1.96 * s)

    assert not checks.lab06_seed_summary(normal_sd)
    assert "standard error" in capsys.readouterr().out


def test_events() -> None:
    from soutui.serving.schemas import EventBatch

    def right(user: str, items: list[str]) -> dict[str, object]:
        return {"events": [{"event_id": f"{user}-{n}", "user_id": user, "item_id": i, "event_type": "view"}
                           for n, i in enumerate(items)]}

    assert checks.lab09_events(right, EventBatch)
    no_ids = lambda u, items: {"events": [{"user_id": u, "item_id": i, "event_type": "view"} for i in items]}  # noqa: E731
    assert not checks.lab09_events(no_ids, EventBatch)
    same = lambda u, items: {"events": [{"event_id": "x", "user_id": u, "item_id": i, "event_type": "view"}  # noqa: E731
                                        for i in items]}
    assert not checks.lab09_events(same, EventBatch)
    per_position = lambda u, items: {"events": [{"event_id": str(n), "user_id": u, "item_id": i,  # noqa: E731
                                                 "event_type": "view"} for n, i in enumerate(items)]}
    assert not checks.lab09_events(per_position, EventBatch)


def test_events_messages(capsys: pytest.CaptureFixture[str]) -> None:
    from soutui.serving.schemas import EventBatch

    same = lambda u, items: {"events": [{"event_id": "x", "user_id": u, "item_id": i, "event_type": "view"}  # noqa: E731
                                        for i in items]}
    checks.lab09_events(same, EventBatch)
    assert "event_ids repeat" in capsys.readouterr().out
    wrong_type = lambda u, items: {"events": [{"event_id": f"{u}{i}", "user_id": u, "item_id": i,  # noqa: E731
                                               "event_type": "cart"} for i in items]}
    checks.lab09_events(wrong_type, EventBatch)
    assert 'event_type should be "view"' in capsys.readouterr().out


def test_similar(capsys: pytest.CaptureFixture[str]) -> None:
    def right(v: np.ndarray, i: int, k: int) -> list[int]:
        s = v @ v[i]
        s[i] = -np.inf
        return list(np.argsort(-s)[:k])

    assert checks.lab09_similar(right)
    assert not checks.lab09_similar(lambda v, i, k: list(np.argsort(-(v @ v[i]))[:k]))
    assert "the item itself" in capsys.readouterr().out
    assert not checks.lab09_similar(lambda v, i, k: list(np.argsort(v @ v[i])[:k]))
    assert "least similar" in capsys.readouterr().out
    assert not checks.lab09_similar(lambda v, i, k: right(v, i, k)[::-1])
    assert "wrong order" in capsys.readouterr().out


# ---- lab 14 ---------------------------------------------------------------------------------

LOG = pd.DataFrame({"customer": ["C1"], "sku": ["1"], "action": ["pv"], "when": ["2026-01-01"]})
LOG = pd.concat([LOG, LOG.assign(action="cart"), LOG.assign(action="buy")])
PRODUCTS = pd.DataFrame(columns=["sku", "product_name", "maker", "dept", "blurb"])
EVENT_MAP = "user_id=customer,item_id=sku,event_type=action,ts=when"
ITEM_MAP = "item_id=sku,title=product_name,brand=maker,category=dept,description=blurb"
TYPE_MAP = "pv=view,cart=cart,buy=purchase"


def test_maps(capsys: pytest.CaptureFixture[str]) -> None:
    assert checks.lab14_maps(EVENT_MAP, ITEM_MAP, TYPE_MAP, LOG, PRODUCTS)
    assert checks.lab14_maps(" ts=when, user_id=customer,item_id=sku,event_type=action", ITEM_MAP, TYPE_MAP, LOG,
                             PRODUCTS)
    backwards = "customer=user_id,sku=item_id,action=event_type,when=ts"
    assert not checks.lab14_maps(backwards, ITEM_MAP, TYPE_MAP, LOG, PRODUCTS)
    assert "event_map is the wrong way round" in capsys.readouterr().out
    assert not checks.lab14_maps(EVENT_MAP, "item_id=sku,title=product_name", TYPE_MAP, LOG, PRODUCTS)
    assert "item_map misses ['brand', 'category', 'description']" in capsys.readouterr().out
    assert not checks.lab14_maps(EVENT_MAP, ITEM_MAP, "view=pv,cart=cart,purchase=buy", LOG, PRODUCTS)
    assert "the shop's values go on the left" in capsys.readouterr().out
    assert not checks.lab14_maps(EVENT_MAP, ITEM_MAP, "pv=view,cart=cart,buy=cart", LOG, PRODUCTS)
    assert "['buy'] map to the wrong thing" in capsys.readouterr().out
    assert not checks.lab14_maps("user_id customer", ITEM_MAP, TYPE_MAP, LOG, PRODUCTS)
    assert "is not name=name" in capsys.readouterr().out


def _result(model: str, valid: float, test: float) -> dict[str, object]:
    return {"model": model, "metrics": {"valid": {"NDCG@10": valid}, "test": {"NDCG@10": test}}}


def test_pick(capsys: pytest.CaptureFixture[str]) -> None:
    real = [_result("popularity", 0.238, 0.230), _result("recent-popularity", 0.241, 0.233),
            _result("itemknn", 0.230, 0.236)]

    def on_valid(results: list[dict]) -> str:  # type: ignore[type-arg]
        return str(max(results, key=lambda r: r["metrics"]["valid"]["NDCG@10"])["model"])

    assert checks.lab14_pick(on_valid, real)
    on_test = lambda results: max(results, key=lambda r: r["metrics"]["test"]["NDCG@10"])["model"]  # noqa: E731
    assert not checks.lab14_pick(on_test, real)
    assert "choosing on test" in capsys.readouterr().out
    assert not checks.lab14_pick(lambda results: "itemknn", real)
    assert "here recent-popularity" in capsys.readouterr().out


def test_same_dept(capsys: pytest.CaptureFixture[str]) -> None:
    def right(history: list[str], recs: list[str]) -> float:
        return sum(d in set(history) for d in recs) / len(recs)

    assert checks.lab14_same_dept(right)
    assert not checks.lab14_same_dept(lambda h, r: len(set(h) & set(r)) / len(r))
    assert "repeats included" in capsys.readouterr().out
    assert not checks.lab14_same_dept(lambda h, r: sum(d in set(h) for d in r))
    assert "too large" in capsys.readouterr().out


def test_reference_maps_pass_their_own_check() -> None:
    assert checks.lab14_maps(*checks.lab14_reference_maps(), LOG, PRODUCTS)


def test_maps_partly_backwards(capsys: pytest.CaptureFixture[str]) -> None:
    assert not checks.lab14_maps("customer=user_id,sku=item_id", ITEM_MAP, "view=pv", LOG, PRODUCTS)
    out = capsys.readouterr().out
    assert "event_map is the wrong way round" in out and "type_map is the wrong way round" in out
