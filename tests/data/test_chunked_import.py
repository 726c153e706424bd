"""The generic importer a chunk at a time: the same store and report whatever the chunk size.

A file with duplicates (whole rows and event ids) on both sides of chunk boundaries, a
quoted field spanning lines, lines that cannot be parsed, bad timestamps, unknown items,
PII and one bot is imported with chunks of 7 rows and in one chunk: the events, items,
users, quarantine (reasons, order and content) and the report must be identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from soutui.data.importers.base import write_result
from soutui.data.importers.generic import GenericOptions, build, stage
from soutui.data.store import open_store

KEY = "k" * 32
MAPPING = {"event_id": "eid", "user_id": "cust", "session_id": "sess", "item_id": "sku",
           "event_type": "act", "ts": "when", "query": "q"}  # fmt: skip
T0 = 1_614_593_000


def _rows(bot: bool) -> list[str]:
    rows = []
    for i in range(60):
        u, sku = f"user{i % 9}", f"S{i % 13}"
        eid = "" if i % 4 else f"e{i}"
        q = f"ring me at user{i}@example.com" if i % 10 == 3 else ""
        rows.append(f"{eid},{u},s{i % 5},{sku},{'view' if i % 3 else 'BUY'},{T0 + i},{q},x{i}")
    rows[5] = rows[2]  # an exact duplicate in the first chunk of 7 ...
    rows[9] = rows[1]  # ... and across a chunk boundary
    rows[30] = rows[0].replace(",view,", ",cart,").replace(",BUY,", ",cart,")  # same event id e0: duplicate id
    rows[12] = f"e12,user1,s1,S1,view,{T0 + 12},\"a query\nspanning two lines\",x"  # a quoted field over lines
    rows[6] = f"e6,user6,s1,S6,view,{T0 + 6},\"the last line of a chunk of 7\nand the first of the next\",x"
    rows[20] = "e20,user2,s2,S2,view"  # wrong field count: bad line
    rows[21] = f"e21,user2,s2,S2,view,{T0},\"never closed,x"  # unbalanced quote
    rows[25] = "e25,user3,s3,S3,view,yesterday,,x"  # malformed ts
    rows[26] = "e26,user3,s3,S3,view,,,x"  # missing ts
    rows[27] = f"e27,user3,s3,NOPE,view,{T0},,x"  # unknown item
    rows[28] = f"e28,,,S4,view,{T0},,x"  # no user, no session
    rows[29] = f"e29,user4,s4,S4,wishlist,{T0},,x"  # bad event type
    rows[40] = f"e40,user4,s4,S4,view,{T0 - 10**9},,x"  # impossible ts
    rows += [rows[27], rows[2], rows[13]]  # duplicates of a quarantined row and of kept rows, chunks later
    if bot:  # one actor with far too many events (over cleaning.BOT_MIN_EVENTS), one of them twice
        rows += [f",bot,sb,S{i % 13},view,{T0 + i},,x" for i in range(1100)]
        rows.append(rows[-1])
    return rows


def _files(tmp_path: Path, bot: bool = False) -> tuple[Path, Path]:
    events = tmp_path / "events.csv"
    events.write_text("eid,cust,sess,sku,act,when,q,extra\n" + "\n".join(_rows(bot)) + "\n", encoding="utf-8")
    items = tmp_path / "items.csv"
    items.write_text("id,name\n" + "".join(f"S{i},Item {i}\n" for i in range(13)) + "S3,again\n,blank\n")
    return events, items


def _opts(events: Path, items: Path | None) -> GenericOptions:
    return GenericOptions(events=str(events), name="shop", items=str(items) if items else None,
                          mapping=MAPPING, item_mapping={"item_id": "id", "title": "name"})  # fmt: skip


def _report(res_report: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in res_report.items() if k != "seconds"}


# what the in-memory importer (before chunking) reported for this file (with the bot), checked against it once
QUARANTINED = {"bad_event_type": 1, "bad_line": 2, "duplicate_event_id": 1, "duplicate_item": 1,
               "duplicate_row": 5, "impossible_ts": 1, "malformed_ts": 1, "missing_item_id": 1,
               "missing_ts": 1, "missing_user": 1, "unknown_item": 1}  # fmt: skip


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)


@pytest.mark.parametrize(("with_items", "bot", "chunk"), [(True, False, 7), (False, False, 7), (True, True, 150)])
def test_tiny_chunks_give_the_same_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_items: bool, bot: bool, chunk: int
) -> None:
    monkeypatch.setenv("SOUTUI_PSEUDONYM_KEY", KEY)
    events, items = _files(tmp_path, bot)
    whole = build(_opts(events, items if with_items else None), chunk_rows=1_000_000)
    tiny = build(_opts(events, items if with_items else None), chunk_rows=chunk)
    assert _report(tiny.report.to_dict()) == _report(whole.report.to_dict())
    assert list(tiny.tables) == list(whole.tables) == ["items", "events", "users"]
    for t in tiny.tables:
        _same(tiny.tables[t], whole.tables[t])
    _same(tiny.quarantine, whole.quarantine)
    expected = {k: v for k, v in QUARANTINED.items() if with_items or "item" not in k}
    if bot:  # the bot's 1,100 events (its last one twice: a duplicate, not a bot event)
        expected |= {"abnormal_user": 1100, "duplicate_row": expected["duplicate_row"] + 1}
    assert tiny.report.quarantined == expected
    q = tiny.quarantine
    dup_lines = sorted(int(r) for r in q.loc[q["reason"] == "duplicate_row", "row"])
    assert dup_lines[:2] == [7, 12]  # line 7 repeats line 4 (same chunk), line 12 repeats line 3 (the chunk before)
    ev = tiny.tables["events"]
    assert tiny.report.rows_read["events"] == 63 + 1101 * bot
    assert len(ev) == 63 + 1101 * bot - sum(v for k, v in expected.items() if k not in ("duplicate_item", "missing_item_id"))
    assert "the last line of a chunk of 7\nand the first of the next" in set(ev["query"].dropna())
    assert ev["event_id"].is_unique and "bot" not in " ".join(q["data"])  # pseudonyms in the quarantine too
    assert json.loads(q["data"].iloc[0]) == {"line": 24, "problem": "5 fields where the header has 8"}


def test_other_formats_chunked(tmp_path: Path) -> None:
    df = pd.DataFrame({"user": [f"u{i % 4}" for i in range(40)], "sku": [f"S{i % 6}" for i in range(40)],
                       "ts": [T0 + (i % 17) for i in range(40)], "kind": ["view", "cart", "bad"] * 13 + ["view"]})  # fmt: skip
    df = pd.concat([df, df.iloc[[0, 1, 3]]], ignore_index=True)  # duplicates, chunks after their first
    paths = [tmp_path / "ev.parquet", tmp_path / "ev.jsonl", tmp_path / "ev.tsv"]
    df.to_parquet(paths[0])
    df.to_json(paths[1], orient="records", lines=True)
    df.to_csv(paths[2], sep="\t", index=False)
    for path in paths:
        opts = GenericOptions(events=str(path), name="x", mapping={"user_id": "user", "item_id": "sku",
                              "event_type": "kind"}, pseudonymize=False)  # fmt: skip
        whole, tiny = build(opts, chunk_rows=1000), build(opts, chunk_rows=5)
        assert _report(tiny.report.to_dict()) == _report(whole.report.to_dict())
        assert tiny.report.quarantined == {"bad_event_type": 13, "duplicate_row": 3}, path.name
        for t in whole.tables:
            _same(tiny.tables[t], whole.tables[t])
        _same(tiny.quarantine, whole.quarantine)


def test_jsonl_key_first_used_in_a_later_chunk(tmp_path: Path) -> None:
    """A JSONL key first used after the first chunk is mapped as the whole-file import maps it (the
    earlier rows hold null); one that earlier rows' checks depend on is refused with what to do."""
    from soutui.data.importers.base import DataError

    recs = [{"user_id": f"u{i % 4}", "item_id": f"S{i % 6}", "ts": T0 + i, "event_type": "view"} for i in range(30)]
    for i in range(12, 30, 3):
        recs[i] |= {"query": f"red tea {i}", "session_id": f"s{i % 2}"}
    path = tmp_path / "ev.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    opts = GenericOptions(events=str(path), name="x", pseudonymize=False)
    whole, tiny = build(opts, chunk_rows=1000), build(opts, chunk_rows=5)
    assert _report(tiny.report.to_dict()) == _report(whole.report.to_dict())
    assert tiny.meta == whole.meta and "query" in json.loads(tiny.meta["mapping"])
    for t in whole.tables:
        _same(tiny.tables[t], whole.tables[t])
    assert tiny.tables["events"]["query"].notna().sum() == 6
    recs[17]["relevance"] = 2.0  # earlier rows were already checked as unlabelled
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(DataError, match=r"\['relevance'\] first appear at line 16 or later.*--chunk-rows"):
        build(opts, chunk_rows=5)
    assert build(opts, chunk_rows=1000).report.rows_read["events"] == 30


@pytest.fixture(params=["duckdb", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb://{tmp_path / 'store.duckdb'}"
    return str(request.getfixturevalue("pg_url"))


def _dump(url: str, name: str) -> dict[str, pd.DataFrame]:
    store = open_store(url, read_only=True)
    try:
        return {t: store.read(name, t) for t in ("items", "users", "events", "quarantine")}
    finally:
        store.close()


def test_chunked_write_stores_what_a_whole_write_stores(
    tmp_path: Path, any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOUTUI_PSEUDONYM_KEY", KEY)
    events, items = _files(tmp_path)
    whole = build(_opts(events, items), chunk_rows=1_000_000)
    whole.name = "whole"
    r1 = write_result(whole, any_store)  # tables in memory: Store.write_dataset
    staged = stage(_opts(events, items), chunk_rows=7)
    assert staged.staged is not None and staged.tables["items"] is not None
    r2 = write_result(staged, any_store)  # chunk by chunk: Store.write_dataset_chunks
    assert r2.rows_kept == r1.rows_kept == {"items": 13, "events": 49, "users": 9}
    assert _report(r2.to_dict()) == {**_report(r1.to_dict()), "dataset": "shop"}
    a, b = _dump(any_store, "whole"), _dump(any_store, "shop")
    for t in a:
        _same(a[t], b[t])
    assert len(b["quarantine"]) == sum(QUARANTINED.values())
    assert b["quarantine"]["reason"].value_counts().to_dict() == QUARANTINED


def test_a_failed_chunked_write_keeps_the_old_dataset(
    tmp_path: Path, any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOUTUI_PSEUDONYM_KEY", KEY)
    events, items = _files(tmp_path)
    write_result(stage(_opts(events, items), chunk_rows=7), any_store)
    before = _dump(any_store, "shop")
    res = stage(_opts(events, items), chunk_rows=7)
    assert res.staged is not None
    chunks = res.staged.events

    def broken() -> object:  # the disk fills up after the first chunk of events was written
        it = chunks()
        yield next(it)
        raise OSError("No space left on device")

    monkeypatch.setattr(res.staged, "events", broken)
    with pytest.raises(OSError, match="No space"):
        write_result(res, any_store)
    after = _dump(any_store, "shop")
    for t in before:
        _same(before[t], after[t])


def test_next_import_removes_the_scratch_of_a_killed_one(tmp_path: Path) -> None:
    """A killed import never ran `close`: its scratch directory is removed by the next import's
    sweep, while one whose process still runs, and one that names no process, are kept."""
    import subprocess
    import sys

    from soutui.data.importers.staging import OWNER, PREFIX, remove_orphans

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed, running, unnamed = (tmp_path / f"{PREFIX}{n}" for n in ("a", "b", "c"))
    for d in (killed, running, unnamed):
        d.mkdir()
        (d / "staging.duckdb").write_bytes(b"x" * 10)
    (killed / OWNER).write_text(dead.stdout.strip())
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (running / OWNER).write_text(str(live.pid))
        assert remove_orphans(tmp_path) == [killed]
    finally:
        live.kill()
        live.wait()
    assert not killed.exists() and running.exists() and unnamed.exists()
