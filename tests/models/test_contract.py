"""Every model in contract.CASES passes the same behavioural checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from contract import CASES, HOT_ITEM, Case, cyclic_data, fit_case, probe_histories, synthetic_content

from soutui.data.sequences import SequenceData, leave_one_out
from soutui.evaluation.protocol import evaluate_full_ranking
from soutui.models.base import Recommender
from soutui.models.registry import MODELS, load_model

_FITTED: dict[str, Recommender] = {}


@pytest.fixture(scope="module")
def data() -> SequenceData:
    return cyclic_data()


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def fitted(case: Case, data: SequenceData) -> Recommender:
    if case.name not in _FITTED:  # fit once per model for the whole module
        _FITTED[case.name] = fit_case(case, data)
    return _FITTED[case.name]


def test_registered(case: Case) -> None:
    if case.served_from is not None:  # a load-only served form, not a model one trains by name
        assert case.name not in MODELS and case.factory().name in MODELS
        return
    assert case.name in MODELS
    assert case.factory().name == case.name


def test_timestamps_are_accepted(fitted: Recommender, data: SequenceData) -> None:
    """score(histories, timestamps) and recommend(..., timestamps=) work for every model."""
    hists = probe_histories(data)[:7]
    times = [1_700_000_000 + 86400 * np.arange(len(h), dtype=np.int64) for h in hists]
    scores = fitted.score(hists, times)
    assert scores.shape == (7, data.n_items) and np.isfinite(scores).all()
    items, _ = fitted.recommend(hists[0], k=3, timestamps=times[0])
    assert len(items) == 3


def test_score_shape_and_finite(fitted: Recommender, data: SequenceData) -> None:
    hists = probe_histories(data)[:7]
    scores = fitted.score(hists)
    assert scores.shape == (7, data.n_items)
    assert np.isfinite(scores).all()
    assert fitted.score([np.array([3], np.int64)]).shape == (1, data.n_items)


def test_known_answer(case: Case, fitted: Recommender, data: SequenceData) -> None:
    check_known_answer(case, fitted, data)


def check_known_answer(case: Case, fitted: Recommender, data: SequenceData) -> None:
    hists = probe_histories(data)
    truth = np.array([(h[-1] + 1) % data.n_items for h in hists])
    scores = fitted.score(hists)
    if case.next_item_top1:
        np.testing.assert_array_equal(scores.argmax(1), truth)
    if case.min_next_item_hr10:
        top10 = np.argsort(-scores, axis=1)[:, :10]
        hr = float((top10 == truth[:, None]).any(1).mean())
        assert hr >= case.min_next_item_hr10, f"{case.name}: next-item HR@10 {hr:.3f}"
    if case.most_popular_top1:
        assert (scores.argmax(1) == HOT_ITEM).all()
        items, _ = fitted.recommend(np.array([1, 2], np.int64), k=3)
        assert items[0] == HOT_ITEM


def test_full_ranking_evaluation_runs(case: Case, data: SequenceData) -> None:
    """On a leave-one-out split of the cyclic data, sequential models find the target."""
    split = leave_one_out(data)
    model = fit_case(case, split.train)
    out = evaluate_full_ranking(model, split.test, data.n_items, ks=(1, 10))
    assert out["users"] == len(split.test)
    if case.next_item_top1:
        # every test target is (last history item + 1), hot-item walks included
        assert out["HR@1"] == pytest.approx(1.0)
    if case.min_next_item_hr10:
        assert out["HR@10"] >= case.min_next_item_hr10


def test_recommend_excludes(fitted: Recommender, data: SequenceData) -> None:
    hist = np.array([4, 5, 6], np.int64)
    best, _ = fitted.recommend(hist, k=3)
    items, scores = fitted.recommend(hist, k=5, exclude=best)
    assert len(items) == 5 and not set(best) & set(items)
    assert np.all(np.diff(scores) <= 0), "recommend must return best first"
    every, _ = fitted.recommend(hist, k=data.n_items, exclude=np.array([0, 1], np.int64))
    assert len(every) == data.n_items - 2


def test_similar_items_never_self(fitted: Recommender, data: SequenceData) -> None:
    for item in (0, HOT_ITEM, data.n_items - 1):
        items, _ = fitted.similar_items(item, k=5)
        assert len(items) == 5 and item not in items


def test_save_load_roundtrip(case: Case, fitted: Recommender, data: SequenceData, tmp_path: Path) -> None:
    if case.served_from is not None:  # load-only: saving is a clear error, loading is the constructor
        with pytest.raises(NotImplementedError, match="load-only"):
            fitted.save(tmp_path / "m")
        with pytest.raises(NotImplementedError, match="load-only"):
            fitted.fit(data)
        return
    fitted.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(fitted) and loaded.params() == fitted.params()
    hists = probe_histories(data)
    np.testing.assert_array_equal(loaded.score(hists), fitted.score(hists))
    np.testing.assert_array_equal(loaded.similar_items(2, 5)[0], fitted.similar_items(2, 5)[0])


def test_deterministic(case: Case, fitted: Recommender, data: SequenceData) -> None:
    again = fit_case(case, data)
    hists = probe_histories(data)
    np.testing.assert_allclose(again.score(hists), fitted.score(hists), rtol=1e-6, atol=1e-7)


def test_refit_repeats_the_fit_on_every_interaction(case: Case, fitted: Recommender, data: SequenceData) -> None:
    """`refit`, what serving publishes: a new model of the same kind and parameters fitted on `data`
    with nothing validated: a model trained in epochs runs as many as the fit it repeats, one
    without epochs refits exactly as a plain fit does. The refit still knows the data."""
    if case.served_from is not None:
        with pytest.raises(NotImplementedError, match="load-only"):
            fitted.refit(data)
        return
    new = fitted.refit(data, content=synthetic_content(data))
    assert type(new) is type(fitted) and new is not fitted
    hists = probe_histories(data)
    exempt = {"epochs", *fitted.BUDGETS}
    assert {k: new.params()[k] for k in fitted.params() if k not in exempt} == {
        k: v for k, v in fitted.params().items() if k not in exempt
    }
    if fitted.BUDGETS:
        report, old = new.training_report() or {}, fitted.training_report() or {}
        assert report["epoch"] == old["epoch"] > 0 and report["best_epoch"] == -1
        assert all(new.params()[k] == 0.0 for k in fitted.BUDGETS)
    else:
        np.testing.assert_array_equal(new.score(hists), fit_case(case, data).score(hists))
    check_known_answer(case, new, data)
