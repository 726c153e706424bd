"""Cleaning rules: each rejects what it should, with the reason, and nothing else."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from soutui.data.cleaning import (
    MIN_TS,
    ImportReport,
    Quarantine,
    abnormal_actors,
    clean_events,
    clean_items,
    with_row_numbers,
)

NOW = 1_700_000_000


def _events(rows: list[dict[str, object]]) -> pd.DataFrame:
    base = {"event_id": None, "user_id": "u1", "item_id": "i1", "event_type": "view", "ts": 1_600_000_000}
    return with_row_numbers(pd.DataFrame([{**base, **r} for r in rows]))


def test_each_rule_quarantines_with_reason_and_original_row() -> None:
    ev = _events(
        [
            {"event_id": "a"},  # ok
            {"event_id": "b", "event_type": "like"},  # bad type
            {"event_id": "c", "item_id": None},  # missing item
            {"event_id": "d", "user_id": " "},  # missing user (blank)
            {"event_id": "e", "ts": MIN_TS - 1},  # before 1995
            {"event_id": "f", "ts": NOW + 10 * 86_400},  # future
            {"event_id": "a"},  # identical row
            {"event_id": "a", "item_id": "i2"},  # same event id, different content
            {"event_id": "g", "item_id": "zzz"},  # not in catalogue
            {"event_id": "h", "ts": None},  # missing ts is allowed
            {"event_id": "i", "event_type": " Purchase "},  # normalised, kept
        ]
    )
    report, q = ImportReport("t", "t"), Quarantine()
    kept = clean_events(ev, report, q, catalogue=pd.Series(["i1", "i2"]), now=NOW)
    assert kept["event_id"].tolist() == ["a", "h", "i"]
    assert kept["event_type"].tolist() == ["view", "view", "purchase"]
    assert report.quarantined == {
        "bad_event_type": 1,
        "missing_item": 1,
        "missing_user": 1,
        "impossible_ts": 2,
        "duplicate_row": 1,
        "duplicate_event_id": 1,
        "unknown_item": 1,
    }
    qf = q.frame()
    assert len(qf) == 8
    row = qf[qf["reason"] == "bad_event_type"].iloc[0]
    assert row["table"] == "events" and row["row"] == "2"
    assert json.loads(row["data"])["event_type"] == "like"


def test_search_events_need_query_not_item_and_no_actor_when_allowed() -> None:
    ev = _events(
        [
            {"event_id": "a", "event_type": "search", "item_id": None, "query": "red shoes", "user_id": None},
            {"event_id": "b", "event_type": "search", "item_id": None, "query": "", "user_id": None},
        ]
    )
    report, q = ImportReport("t", "t"), Quarantine()
    kept = clean_events(ev, report, q, require_actor=False, now=NOW)
    assert kept["event_id"].tolist() == ["a"]
    assert report.quarantined == {"missing_item": 1}


def test_bot_detection_fires_on_a_bot_not_on_heavy_humans() -> None:
    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in range(300) for _ in range(int(rng.integers(3, 20)))]
    users += ["heavy"] * 900  # a very active human: under the 1000 floor
    users += ["bot"] * 5000
    ev = pd.DataFrame({"user_id": users, "item_id": "i", "event_type": "view"})
    mask = abnormal_actors(ev)
    assert set(ev.loc[mask, "user_id"]) == {"bot"}
    # sessions stand in for anonymous users
    sessions = ["big"] * 1500 + [f"s{i // 4}" for i in range(2000)]
    anon = pd.DataFrame({"user_id": [None] * len(sessions), "session_id": sessions})
    assert abnormal_actors(anon).sum() == 1500


def test_items_duplicates_missing_ids_and_bad_prices() -> None:
    items = pd.DataFrame(
        {"item_id": ["a", "b", "a", None, "c", "d"], "price": ["9.99", "-1", "3", "1", "abc", "$1,299.00"]}
    )
    report, q = ImportReport("t", "t"), Quarantine()
    kept = clean_items(items, report, q)
    assert kept["item_id"].tolist() == ["a", "b", "c", "d"]
    assert kept["price"].tolist()[0] == 9.99 and kept["price"].tolist()[3] == 1299.0
    assert kept["price"].isna().tolist() == [False, True, True, False]
    assert report.fixed == {"bad_price": 2}
    assert report.quarantined == {"missing_item_id": 1, "duplicate_item": 1}
    assert sorted(q.frame()["row"].tolist()) == ["3", "4"]
