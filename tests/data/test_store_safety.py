"""Imports are idempotent and a failed import leaves the previous dataset intact."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from soutui.data.importers.base import write_result
from soutui.data.importers.generic import GenericOptions, build
from soutui.data.store import DuckDBStore, open_store

CSV = """user,sku,action,time,q
alice,A,view,2021-03-01T10:00:00Z,
alice,B,buy,1614593000,
bob,A,click,1614593100000,
bob,,view,1614593200,
carol,A,view,1614593300,
carol,A,view,1614593300,
"""


def _opts(tmp_path: Path, text: str = CSV) -> GenericOptions:
    f = tmp_path / "events.csv"
    f.write_text(text)
    return GenericOptions(
        events=str(f), name="shop", mapping={"user_id": "user", "item_id": "sku", "event_type": "action", "ts": "time"},
        pseudonymize=False,
    )  # fmt: skip


def _snapshot(url: str, name: str) -> dict[str, pd.DataFrame]:
    store = open_store(url)
    try:
        return {t: store.read(name, t) for t in ("items", "users", "events", "quarantine")}
    finally:
        store.close()


def test_import_twice_gives_identical_dataset(tmp_path: Path, store_url: str) -> None:
    write_result(build(_opts(tmp_path)), store_url)
    first = _snapshot(store_url, "shop")
    write_result(build(_opts(tmp_path)), store_url)
    second = _snapshot(store_url, "shop")
    for t in first:
        pd.testing.assert_frame_equal(first[t], second[t])
    assert len(first["events"]) == 4 and len(first["quarantine"]) == 2


def test_failed_write_leaves_old_dataset(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_result(build(_opts(tmp_path)), store_url)
    before = _snapshot(store_url, "shop")
    bigger = _opts(tmp_path, CSV + "dave,C,view,1614593400,\n")
    original = DuckDBStore.write_dataset

    def failing(self, name, tables, quarantine=None, meta=None, **kw):  # type: ignore[no-untyped-def]
        class Boom:  # fails while writing meta, i.e. after the tables were replaced
            def __str__(self) -> str:
                raise OSError("disk full")

        return original(self, name, tables, quarantine, {**(meta or {}), "boom": Boom()}, **kw)

    monkeypatch.setattr(DuckDBStore, "write_dataset", failing)
    with pytest.raises(OSError, match="disk full"):
        write_result(build(bigger), store_url)
    monkeypatch.undo()
    after = _snapshot(store_url, "shop")
    for t in before:
        pd.testing.assert_frame_equal(before[t], after[t])
