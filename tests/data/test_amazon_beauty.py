"""Amazon Beauty import reproduces the published S3-Rec sequences exactly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from soutui.data.datasets import load_dataset
from soutui.data.importers.amazon_beauty import impute_timestamps
from soutui.data.sequences import SequenceData
from soutui.data.store import open_store


def test_import_reproduces_beauty_txt(store_url: str, needs: Callable[[str], Path]) -> None:
    root = needs("amazon-beauty")
    items, events = load_dataset("amazon-beauty", store_url=store_url, data_dir=root, progress=False)
    assert len(items) == 12101
    assert len(events) == 198502  # cleaning removed nothing
    assert events["ts"].notna().all()
    data = SequenceData.from_events(events, items)
    assert data.n_users == 22363 and data.n_interactions == 198502
    expected = {}
    for line in (root / "amazon-beauty" / "Beauty.txt").read_text().splitlines():
        user, *seq = line.split()
        expected[user] = seq
    assert set(map(str, data.user_ids)) == set(expected)
    for u, seq in zip(data.user_ids, data.sequences, strict=True):
        assert list(data.item_ids[seq]) == expected[str(u)], u
    store = open_store(store_url)
    report = store.meta("amazon-beauty")["report"]
    assert '"quarantined_total": 0' in report and "missing_ts_from_user_neighbours" in report
    assert len(store.read("amazon-beauty", "quarantine")) == 0
    store.close()
    titles = items["title"].dropna()
    assert not titles.str.contains(r"&(?:[a-z]+|#[0-9]+);").any()  # the file's HTML entities are decoded
    assert titles.str.contains("\u2605").sum() >= 10  # &#9733; is a star in some product names


def test_impute_keeps_order() -> None:
    ts = pd.Series([10, None, 30, 40, 50, None, None, None], dtype="Int64")
    users = pd.Series(["a"] * 5 + ["b"] * 3)
    items = pd.Series(["x", "y", "z", "m", "n", "z", "x", "q"])
    filled, from_user, from_item = impute_timestamps(ts, users, items)
    assert (from_user, from_item) == (1, 3)
    assert filled.tolist()[:5] == [10, 10, 30, 40, 50]
    # user b: item medians z=30, x=10 -> cummax keeps 30, unknown item q -> global median 20 -> 30
    assert filled.tolist()[5:] == [30, 30, 30]
    assert np.all(np.diff(filled.to_numpy(dtype=np.int64)[5:]) >= 0)


def test_impute_reads_training_events_only() -> None:
    """Item and global medians ignore each user's last two events (validation and test targets)."""
    ts = pd.Series([100, 300, 5000, 6000, None, None, None], dtype="Int64")
    users = pd.Series(["a"] * 4 + ["b"] * 3)
    items = pd.Series(["x", "z", "p", "z", "q", "z", "x"])
    filled, _, from_item = impute_timestamps(ts, users, items)
    assert from_item == 3
    # over all events z's median would be 3150 and the global median 2650; training
    # events are a's x=100 and z=300 only: q -> global 200, z -> 300, x -> 100 -> cummax 300
    assert filled.tolist()[4:] == [200, 300, 300]
