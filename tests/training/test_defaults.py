"""Robust defaults for data nobody tuned on (issue 15): head-weight grid and its edge warning,
max_minutes as a cap on the whole fit, what the run record says, the transformer alone from
the CLI, progress on stderr, and refusing to evaluate data that cannot be evaluated."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from sasrec_fixtures import SMALL, cyclic_data, sasrec  # noqa: E402

from soutui.config import ConfigError  # noqa: E402
from soutui.data.sequences import SequenceData  # noqa: E402
from soutui.evaluation.report import evaluate_sequences  # noqa: E402
from soutui.features.content import ItemContent  # noqa: E402
from soutui.models.itemknn import ItemKNN  # noqa: E402
from soutui.models.sasrec_recommender import ContentConfig, head_weight_warning  # noqa: E402


@pytest.fixture(scope="module")
def split():  # type: ignore[no-untyped-def]
    return cyclic_data(n_users=60)


def test_head_weight_grid_is_wide_and_warns_at_its_top() -> None:
    grid = ContentConfig().cooc_alphas
    assert grid[0] == 0.0 and max(grid) >= 32 and len(grid) >= 12
    ratios = [b / a for a, b in zip(grid[1:], grid[2:], strict=False)]
    assert max(ratios) <= 2.0  # roughly geometric: no gap wider than a doubling
    found = {w: 0.1 + w / 100 for w in grid}  # rising to the top of the grid
    warning = head_weight_warning(found, 32.0)
    assert warning is not None and "32" in warning and "cooc_alphas" in warning
    assert head_weight_warning(found, 4.0) is None
    assert head_weight_warning(found, 0.0) is None  # 0 = the head does not help, not a truncated grid


def test_fit_warns_when_the_head_weight_is_the_largest_tried(split) -> None:  # type: ignore[no-untyped-def]
    # an untrained transformer (tiny lr, one epoch) and a head that knows the cycle: the top weight wins
    m = sasrec(**{**SMALL, "lr": 1e-6, "epochs": 1, "cooc_neighbors": 4, "cooc_alphas": [0.5, 1.0]})
    m.fit(split.train, split.valid)
    report = m.training_report()
    assert report is not None and sorted(report["cooc_valid"]["ndcg10_by_weight"]) == [
        0.0,
        0.5,
        1.0,
    ]  # 0 added
    assert report["head_weight"] == 1.0
    assert len(report["warnings"]) == 1 and "largest tried" in report["warnings"][0]
    assert report["transformer_alone_valid_ndcg10"] == report["cooc_valid"]["ndcg10_by_weight"][0.0]
    assert report["content_used"] == {"titles": False, "attributes": False, "time": True}
    undated = split.train.with_sequences(
        split.train.sequences, [np.zeros(len(s), np.int64) for s in split.train.sequences]
    )
    m2 = sasrec(**{**SMALL, "epochs": 1, "cooc_neighbors": 0}).fit(undated, split.valid)
    assert (m2.training_report() or {})["content_used"]["time"] is False  # all-zero times are no times


def test_max_minutes_caps_the_whole_fit_including_validation() -> None:
    big = cyclic_data(n_users=4000)  # ~2 s an epoch on one thread with batches of 16
    budget = 0.05  # minutes: 3 s, less than two epochs
    m = sasrec(**{**SMALL, "batch_size": 16, "epochs": 1000, "max_minutes": budget, "cooc_neighbors": 8})
    t0 = time.perf_counter()
    m.fit(big.train, big.valid)
    elapsed = time.perf_counter() - t0
    report = m.training_report()
    assert report is not None and report["stopped"] == "time"
    assert report["valid_seconds"] > 0 and "head_weight" in report  # validated, then chose the weight
    assert elapsed <= budget * 60 + 1.5, elapsed


def test_max_minutes_reserves_the_session_heads_votes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The session head's votes can cost many of the network's validation passes (Diginetica: ~5, with
    100 neighbours over 186k sessions): the budget times them before training and keeps them inside."""
    from soutui.models.sknn import SessionKNN

    slow_score = SessionKNN.score

    def score(self, histories, timestamps=None):  # type: ignore[no-untyped-def]
        time.sleep(0.001 * len(histories))  # 4 s for the 4,000 validation rows below
        return slow_score(self, histories, timestamps)

    monkeypatch.setattr(SessionKNN, "score", score)
    big = cyclic_data(n_users=4000)
    budget = 0.1  # minutes: 6 s
    m = sasrec(**{**SMALL, "batch_size": 16, "epochs": 1000, "max_minutes": budget, "session_neighbors": 20})
    t0 = time.perf_counter()
    m.fit(big.train, big.valid)
    elapsed = time.perf_counter() - t0
    report = m.training_report()
    assert report is not None and report["stopped"] == "time" and m.session_ is not None  # the weight was chosen
    assert elapsed <= budget * 60 + 1.5, elapsed


def test_variants_are_checked_and_restored(split) -> None:  # type: ignore[no-untyped-def]
    m = sasrec(**{**SMALL, "lr": 1e-6, "epochs": 1, "cooc_neighbors": 4, "cooc_alphas": [1.0]}).fit(
        split.train, split.valid
    )
    h = split.test.histories[:8]
    with_head = m.score(h)
    assert m.ablations() == {"transformer_alone": {"head_weight": 0.0}}
    with m.variant(head_weight=0.0):
        alone = m.score(h)
    assert not np.allclose(alone, with_head) and np.allclose(m.score(h), with_head)
    with pytest.raises(ConfigError, match="no variant setting shrink"):
        with m.variant(shrink=3.0):
            pass
    knn = ItemKNN().fit(split.train)
    with pytest.raises(ConfigError, match="'itemknn' has no variant setting head_weight.*supports: none"):
        with knn.variant(head_weight=0.0):
            pass


def _full_data(n_users: int = 60) -> SequenceData:
    s = cyclic_data(n_users=n_users)
    seqs = [np.append(h, t) for h, t in zip(s.test.histories, s.test.targets, strict=True)]
    assert s.test.timestamps is not None
    return SequenceData(s.train.item_ids, s.train.user_ids, seqs, None)


def test_train_json_record_and_evaluate_transformer_alone(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import soutui.evaluation.report as report
    import soutui.training.pipeline as pipeline
    from soutui.cli import main
    from soutui.data.sequences import leave_one_out

    data = _full_data()
    split = leave_one_out(data)
    prep = pipeline.Prepared("tiny", data, split, ItemContent())
    monkeypatch.setattr(pipeline, "prepare", lambda *a, **k: prep)
    params = {**SMALL, "lr": 1e-6, "epochs": 2, "cooc_neighbors": 4, "cooc_alphas": [0.5, 1.0]}
    sets = [f"--set={k}={json.dumps(v)}" for k, v in params.items() if k != "progress"]
    run = tmp_path / "run"
    assert main(["train", "--dataset", "tiny", "--output", str(run), "--json", "--no-onnx", *sets]) == 0
    out, err = capsys.readouterr()
    rec = json.loads(out)  # stdout holds the record alone
    assert "epoch 1: loss=" in err and "valid=" in err  # per-epoch progress with validation NDCG, on stderr
    assert "warning: co-occurrence head weight 1 is the largest tried" in err
    tr = rec["training"]
    assert tr["head_weight"] == 1.0 and tr["content_used"]["titles"] is False
    alone = rec["ablations"]["transformer_alone"]
    assert alone["variant"] == {"head_weight": 0.0} and set(alone) == {"variant", "valid", "test"}
    assert alone["valid"]["NDCG@10"] == pytest.approx(tr["transformer_alone_valid_ndcg10"], abs=1e-6)
    assert alone["valid"]["NDCG@10"] < rec["metrics"]["valid"]["NDCG@10"]  # the head was chosen for a reason
    assert rec["warnings"] == tr["warnings"]

    monkeypatch.setattr(report, "load_sequences", lambda *a, **k: (data, ItemContent()))
    assert (
        main(["evaluate", "--dataset", "tiny", "--checkpoint", str(run), "--head-weight", "0", "--json"]) == 0
    )
    out, err = capsys.readouterr()
    ev = json.loads(out)
    assert ev["model"] == "sasrec" and ev["variant"] == {"head_weight": 0.0}
    for part in ("valid", "test"):
        assert ev["metrics"][part]["NDCG@10"] == pytest.approx(alone[part]["NDCG@10"], abs=1e-6)
    assert "rank valid" in err  # ranking batches shown on stderr
    assert main(["evaluate", "--dataset", "tiny", "--model", "popularity", "--head-weight", "0"]) == 2
    assert "no variant setting head_weight" in capsys.readouterr().err


def test_evaluate_refuses_data_without_interactions(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from soutui.cli import main
    from soutui.data.store import open_store

    empty = SequenceData(np.array(["a", "b"], dtype=object), np.array([], dtype=object), [], None)
    with pytest.raises(ConfigError, match="no interactions"):
        evaluate_sequences(empty, "popularity", dataset="x")
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["red shoe", "blue shoe", "green hat"]})
    judged = pd.DataFrame({"event_id": ["1", "2"], "item_id": ["a", "c"], "event_type": ["search", "search"],
                           "query": ["shoe", "hat"], "relevance": [3.0, 3.0]})  # fmt: skip
    viewed = pd.DataFrame({"event_id": ["1", "2"], "item_id": ["a", "c"], "event_type": ["view", "view"],
                           "user_id": ["u", "u"]})  # fmt: skip
    url = f"duckdb://{tmp_path / 's.duckdb'}"
    store = open_store(url)
    try:
        store.write_dataset("judged", {"items": items, "events": judged})
        store.write_dataset("viewed", {"items": items, "events": viewed})
    finally:
        store.close()
    assert main(["evaluate", "--dataset", "judged", "--store", url, "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "no interactions" in err
    assert main(["evaluate-search", "--dataset", "viewed", "--store", url, "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "no relevance judgments" in err
