"""One store contract, run against every backend: embedded DuckDB and a real PostgreSQL server.

The PostgreSQL cases use the session's throwaway server (tests/pg_server.py, a fresh database per
test); they skip only when Debian's postgresql binaries are absent (scripts/setup.sh installs them).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from pg_server import PgServer

from soutui.data.schema import TABLES, content_ids
from soutui.data.store import (
    DatasetNotFound,
    ImportRefused,
    NameCollision,
    StoreError,
    open_store,
)

BACKENDS = ["duckdb", "postgresql"]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb://{tmp_path / 'store.duckdb'}"
    return str(request.getfixturevalue("pg_url"))


def _events(ids: list[str | None], user: str = "u1", t0: int = 1_700_000_000) -> pd.DataFrame:
    return pd.DataFrame(
        {"event_id": ids, "user_id": user, "item_id": [f"i{k}" for k in range(len(ids))],
         "event_type": "view", "ts": [t0 + k for k in range(len(ids))]}
    )  # fmt: skip


ITEMS = pd.DataFrame(
    {"item_id": ["A", "B", "C"], "title": ["红茶 tea", None, "soap"], "price": [1.5, None, 3.0],
     "in_stock": [True, None, False], "attributes": ['{"color": "red"}', None, "{}"]}
)  # fmt: skip
USERS = pd.DataFrame({"user_id": ["alice", "bob"], "attributes": ['{"age": 30}', None]})
QUARANTINE = pd.DataFrame(
    {"table": ["events", "events"], "row": ["3", "7"], "reason": ["no item", "duplicate"],
     "data": ['{"user": "alice", "sku": null}', '{"user": "bob", "sku": "A"}']}
)  # fmt: skip


def _write_shop(url: str, name: str = "my-shop") -> None:
    store = open_store(url)
    try:
        events = pd.DataFrame(
            {"event_id": ["e1", "e2", None, "e4"], "user_id": ["alice", "alice", "bob", "bob"],
             "item_id": ["A", "B", "A", None], "event_type": ["view", "purchase", "click", "search"],
             "query": [None, None, None, "红茶"], "session_id": ["s1", "s1", None, "s2"],
             "ts": [30, 10, 20, 40], "relevance": [None, None, 2.0, None]}
        )  # fmt: skip
        store.write_dataset(
            name, {"items": ITEMS, "users": USERS, "events": events}, QUARANTINE, meta={"source": "test", "rows": "6"}
        )
    finally:
        store.close()


def test_round_trip_keeps_rows_order_dtypes_and_meta(url: str) -> None:
    _write_shop(url)
    store = open_store(url)  # a second open sees what the first wrote
    try:
        assert store.datasets() == ["my_shop"]
        assert store.meta("my-shop") == {"source": "test", "rows": "6", "name": "my-shop"}
        items = store.read("my-shop", "items")
        assert list(items.columns) == list(TABLES["items"]) and dict(items.dtypes.astype(str)) == TABLES["items"]
        assert items["item_id"].tolist() == ["A", "B", "C"] and items["title"].iloc[0] == "红茶 tea"
        assert items["price"].iloc[1] is pd.NA and items["in_stock"].tolist()[::2] == [True, False]
        events = store.read("my_shop", "events")  # either spelling of the name
        assert dict(events.dtypes.astype(str)) == TABLES["events"]
        assert events["ts"].tolist() == [30, 10, 20, 40]  # as written, not re-sorted
        assert events["event_id"].iloc[2] == content_ids(events.iloc[[2]]).iloc[0]
        assert events["query"].iloc[3] == "红茶" and events["relevance"].iloc[2] == 2.0
        assert store.read("my-shop", "users")["user_id"].tolist() == ["alice", "bob"]
        q = store.read("my-shop", "quarantine")
        assert list(q.columns) == ["table", "row", "reason", "data"] and q["reason"].tolist() == ["no item", "duplicate"]
    finally:
        store.close()


TRICKY = ["", " padded ", 'say "hi", then\ttab', "line\nbreak\r\n", "back\\slash \\N", "NULL", "逗号，引号“”", "a,b;c|d"]


def test_awkward_strings_and_numbers_survive_the_round_trip(url: str) -> None:
    n = len(TRICKY)
    items = pd.DataFrame(
        {"item_id": [f"x{k}" for k in range(n)], "title": TRICKY, "description": TRICKY[::-1],
         "price": [0.1, 1e-9, 123456789.123456, -0.0, 1e300, None, 2.5, 3.0],
         "in_stock": [True, False, None, True, False, None, True, True]}
    )  # fmt: skip
    events = _events([f"e{k}" for k in range(n)]).assign(
        query=TRICKY, ts=[0, -1, 2**62, 1, 2, 3, 4, 5], relevance=[0.5, None, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    )
    store = open_store(url)
    try:
        store.write_dataset("shop", {"items": items, "events": events})
        got = store.read("shop", "items")
        assert got["title"].tolist() == TRICKY and got["description"].tolist() == TRICKY[::-1]
        assert got["price"].tolist()[:5] == [0.1, 1e-9, 123456789.123456, -0.0, 1e300] and got["price"].iloc[5] is pd.NA
        assert got["in_stock"].iloc[:2].tolist() == [True, False] and got["in_stock"].iloc[2] is pd.NA
        ev = store.read("shop", "events")
        assert ev["query"].tolist() == TRICKY and ev["ts"].tolist() == [0, -1, 2**62, 1, 2, 3, 4, 5]
        assert store.append_events("shop", events.assign(event_id=[f"f{k}" for k in range(n)])) == n
        appended = store.read("shop", "events").set_index("event_id")["query"]  # append order is not kept
        assert [appended[f"f{k}"] for k in range(n)] == TRICKY
    finally:
        store.close()


def test_unknown_dataset_table_and_bad_names(url: str) -> None:
    _write_shop(url)
    store = open_store(url)
    try:
        with pytest.raises(DatasetNotFound, match="not in the store.*import it first") as err:
            store.read("other", "events")
        assert isinstance(err.value, KeyError)
        with pytest.raises(DatasetNotFound):
            store.append_events("other", _events(["x"]))
        with pytest.raises(ValueError, match="unknown table"):
            store.read("my-shop", "secrets")
        with pytest.raises(StoreError, match="letters, digits"):
            store.write_dataset("bad name;", {"events": _events(["a"])})
    finally:
        store.close()


def test_blank_ids_and_idempotent_appends(url: str) -> None:
    store = open_store(url)
    try:
        store.write_dataset("shop", {"events": _events(["a", None, "  "])})
        stored = store.read("shop", "events")
        assert stored["event_id"].notna().all() and (stored["event_id"].str.strip() != "").all()
        assert store.append_events("shop", _events(["b", "c"], user="u2")) == 2
        assert store.append_events("shop", _events(["b", "c", None], user="u2")) == 1  # the blank one is new
        assert store.append_events("shop", _events(["b", "c", None], user="u2")) == 0  # ... and now known
        assert store.append_events("shop", _events(["d", "d"], user="u3")) == 1  # twice in one batch: once
        ids = store.read("shop", "events")["event_id"]
        assert len(ids) == 7 and not ids.duplicated().any()
        items = store.read("shop", "items")  # written empty: no rows, the schema's columns and dtypes
        assert len(items) == 0 and dict(items.dtypes.astype(str)) == TABLES["items"]
    finally:
        store.close()


def test_refuses_to_wipe_or_halve_and_replace_overrides(url: str) -> None:
    store = open_store(url)
    try:
        store.write_dataset("shop", {"events": _events([f"e{k}" for k in range(10)])})
        with pytest.raises(ImportRefused, match="keeps 0 rows"):
            store.write_dataset("shop", {"events": _events([])})
        with pytest.raises(ImportRefused, match="keeps 0 of 7 events read"):
            store.write_dataset("shop", {"items": pd.DataFrame({"item_id": ["A"]})}, rows_read={"events": 7})
        with pytest.raises(ImportRefused, match="drop 6 of its 10 stored events"):
            store.write_dataset("shop", {"events": _events(["a", "b", "c", "d"])})
        assert len(store.read("shop", "events")) == 10  # untouched
        store.write_dataset("shop", {"events": _events(["a", "b", "c", "d", "e"])})  # half is allowed
        assert store.read("shop", "events")["event_id"].tolist() == ["a", "b", "c", "d", "e"]
        store.write_dataset("shop", {"events": _events(["z"])}, replace=True, meta={"v": "2"})
        assert store.read("shop", "events")["event_id"].tolist() == ["z"]
        assert store.meta("shop") == {"v": "2", "name": "shop"}  # meta replaced, not merged
    finally:
        store.close()


def test_colliding_names_are_refused(url: str) -> None:
    store = open_store(url)
    try:
        store.write_dataset("my_shop", {"events": _events(["a"])})
        with pytest.raises(NameCollision, match="collides with the stored dataset 'my_shop'"):
            store.write_dataset("my-shop", {"events": _events(["b"])}, replace=True)
        store.write_dataset("my_shop", {"events": _events(["b"])})
        store.write_dataset("other", {"events": _events(["c"])})
        assert store.datasets() == ["my_shop", "other"]
        assert store.read("other", "events")["event_id"].tolist() == ["c"]  # datasets do not mix
    finally:
        store.close()


class Boom:
    """A meta value that fails while the dataset is written, i.e. after its tables were replaced."""

    def __str__(self) -> str:
        raise OSError("disk full")


def test_failed_write_leaves_the_previous_dataset(url: str) -> None:
    _write_shop(url)
    store = open_store(url)
    try:
        before = {t: store.read("my-shop", t) for t in ("items", "users", "events", "quarantine")}
        with pytest.raises(OSError, match="disk full"):
            store.write_dataset("my-shop", {"events": _events(["n1", "n2", "n3", "n4"])}, meta={"b": Boom()})  # type: ignore[dict-item]
        for t, df in before.items():
            pd.testing.assert_frame_equal(store.read("my-shop", t), df)
        assert store.meta("my-shop")["source"] == "test"
        assert store.append_events("my-shop", _events(["after"])) == 1  # and the store still works
    finally:
        store.close()


def test_chunked_write_refuses_fewer_events_than_announced(url: str) -> None:
    """A chunk stream that ends early (a reader bug, a truncated scratch file) is refused and rolled
    back: the previous dataset stays, on every backend."""
    _write_shop(url)
    store = open_store(url)
    try:
        before = store.read("my-shop", "events")
        chunks = [_events(["c1", "c2"]), _events(["c3"], t0=1_700_000_100)]
        with pytest.raises(StoreError, match="3 events written where 4 were announced"):
            store.write_dataset_chunks("my-shop", {"items": ITEMS, "users": USERS}, iter(chunks), iter([]), 4, replace=True)
        pd.testing.assert_frame_equal(store.read("my-shop", "events"), before)
    finally:
        store.close()


def test_forget_user_deletes_everywhere_and_keeps_only_a_hash(url: str) -> None:
    _write_shop(url)
    store = open_store(url)
    try:
        counts = store.forget_user("my-shop", "alice", also=["bob-alias"])
        assert counts == {"events": 2, "users": 1, "quarantine": 1}
        assert "alice" not in store.read("my-shop", "events")["user_id"].tolist()
        assert store.read("my-shop", "users")["user_id"].tolist() == ["bob"]
        assert store.read("my-shop", "quarantine")["row"].tolist() == ["7"]  # bob's row stays
        pending = store.pending_forget("my-shop")
        assert len(pending) == 1 and set(pending[0]) == {"subject_hash", "salt", "requested_at"}
        assert "alice" not in str(pending) and len(pending[0]["subject_hash"]) == 64
        assert store.pending_forget("other") == []
        with pytest.raises(StoreError, match="non-blank"):
            store.forget_user("my-shop", "  ")
        with pytest.raises(DatasetNotFound):
            store.forget_user("other", "alice")
        assert store.clear_pending_forget("my-shop", before_ts=pending[0]["requested_at"]) == 0
        assert store.clear_pending_forget("my-shop", before_ts=pending[0]["requested_at"] + 1) == 1
        assert store.pending_forget("my-shop") == []
    finally:
        store.close()
    store = open_store(url)  # the deletion survives a reopen
    try:
        assert store.read("my-shop", "events")["user_id"].tolist() == ["bob", "bob"]
    finally:
        store.close()


def test_read_only_open_reads_and_refuses_writes(url: str) -> None:
    try:  # nothing written yet: no DuckDB file to open, or a database without datasets
        empty = open_store(url, read_only=True)
    except StoreError as exc:
        assert url.startswith("duckdb") and "import a dataset first" in str(exc)
    else:
        assert empty.datasets() == [] and empty.meta("my-shop") == {} and empty.pending_forget("my-shop") == []
        with pytest.raises(DatasetNotFound):
            empty.read("my-shop", "events")
        empty.close()
    _write_shop(url)
    reader = open_store(url, read_only=True)
    try:
        assert reader.datasets() == ["my_shop"] and len(reader.read("my-shop", "events")) == 4
        with pytest.raises(StoreError, match="read-only"):
            reader.append_events("my-shop", _events(["x"]))
        with pytest.raises(StoreError, match="read-only"):
            reader.write_dataset("my-shop", {"events": _events(["x"])}, replace=True)
        with pytest.raises(StoreError, match="read-only"):
            reader.forget_user("my-shop", "alice")
    finally:
        reader.close()


IMPORTER = """
import sys
import pandas as pd
from soutui.data.store import open_store
n = 200_000
ev = pd.DataFrame({"event_id": [f"new{k}" for k in range(n)], "user_id": "u", "item_id": [f"i{k}" for k in range(n)],
                   "event_type": "view", "ts": 1_700_000_000})
store = open_store(sys.argv[1])
print("writing", flush=True)
store.write_dataset("shop", {"events": ev}, replace=True)
store.close()
print("done", flush=True)
"""


def test_kill_during_import_keeps_old_or_new_dataset_whole(url: str) -> None:
    store = open_store(url)
    store.write_dataset("shop", {"events": _events([f"old{k}" for k in range(100)])})
    store.close()
    proc = subprocess.Popen([sys.executable, "-c", IMPORTER, url], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    store = open_store(url)
    try:
        ids = store.read("shop", "events")["event_id"]
        assert len(ids) in (100, 200_000)  # all of the old or all of the new, never a mix
        assert ids.str.startswith("old" if len(ids) == 100 else "new").all()
        assert len(ids) == 200_000 or "done" not in out
        assert store.append_events("shop", _events(["after"], user="u7")) == 1
    finally:
        store.close()


def test_postgres_migrations_upgrade_without_losing_data(pg_url: str) -> None:
    """A database left at schema version 1 by an older release upgrades in place, its rows intact."""
    import psycopg

    from soutui.data.postgres_store import migrate, migration_files, schema_version

    newest = migration_files()[-1][0]
    assert newest >= 2 and [v for v, _, _ in migration_files()] == list(range(1, newest + 1))
    with psycopg.connect(pg_url, autocommit=True) as con:
        assert migrate(con, upto=1) == [1] and schema_version(con) == 1
        con.execute("INSERT INTO soutui_datasets VALUES ('shop', 'shop')")
        con.execute("INSERT INTO soutui_meta VALUES ('shop', 'name', 'shop')")
        con.execute(
            "INSERT INTO soutui_events (dataset, event_id, user_id, item_id, event_type, ts) "
            "VALUES ('shop', 'e1', 'u1', 'A', 'view', 1), ('shop', 'e2', 'u1', 'B', 'view', 2)"
        )
    store = open_store(pg_url)  # a read-write open applies what is missing
    try:
        assert store.read("shop", "events")["event_id"].tolist() == ["e1", "e2"]
        assert store.append_events("shop", _events(["e2", "e3"])) == 1
    finally:
        store.close()
    with psycopg.connect(pg_url, autocommit=True) as con:
        assert schema_version(con) == newest
        assert migrate(con) == []  # idempotent
        indexes = {r[0] for r in con.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'soutui_events'")}
        assert "soutui_events_user" in indexes  # migration 2 ran
        con.execute("INSERT INTO soutui_schema_version (version, name) VALUES (%s, 'from the future')", [newest + 1])
    with pytest.raises(StoreError, match="newer than this soutui"):
        open_store(pg_url)


def test_postgres_failed_migration_changes_nothing(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release whose new migration fails leaves the database exactly at its old version."""
    import shutil

    import psycopg

    from soutui.data import postgres_store

    open_store(pg_url).close()  # at the current version
    newest = postgres_store.migration_files()[-1][0]
    shutil.copytree(postgres_store.MIGRATIONS, tmp_path / "m")
    (tmp_path / "m" / f"{newest + 1:04d}_next.sql").write_text("CREATE TABLE soutui_next (x int);\n")
    (tmp_path / "m" / f"{newest + 2:04d}_broken.sql").write_text("ALTER TABLE soutui_events ADD COLUMN y int;\nSELECT 1/0;\n")
    monkeypatch.setattr(postgres_store, "MIGRATIONS", tmp_path / "m")
    postgres_store.close_pools()  # a new process, as after an upgrade
    with pytest.raises(StoreError, match=rf"migration {newest + 2:04d}_broken.sql failed .*stays at schema version {newest}"):
        open_store(pg_url)
    with psycopg.connect(pg_url) as con:
        assert postgres_store.schema_version(con) == newest
        assert con.execute("SELECT to_regclass('soutui_next')").fetchone() == (None,)  # 0003 rolled back too
        cols = [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'soutui_events'")]
        assert "y" not in cols


def test_postgres_unreachable_is_one_clear_error(pg_server: PgServer) -> None:
    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL store .*no_such_db.*createdb"):
        open_store(pg_server.url("no_such_db"))
    with pytest.raises(StoreError, match="Connection refused") as err:
        open_store("postgresql://bob:secret@127.0.0.1:1/db")
    assert "secret" not in str(err.value) and "bob:***@" in str(err.value)  # no password in messages


CSV = """user,sku,action,time
alice,A,view,1614593000
alice,B,buy,1614593100
bob,A,click,1614593200
bob,,view,1614593300
carol,C,view,1614593400
"""


def test_data_commands_take_the_store_url(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`soutui data import/list/stats/quarantine/forget --store URL` on either backend."""
    import json

    from soutui.cli import main

    events = tmp_path / "events.csv"
    events.write_text(CSV)
    store = ["--store", url]
    assert main(["data", "list", "--json", *store]) == 0
    assert json.loads(capsys.readouterr().out) == []  # an empty store lists nothing (no error)
    assert main(["data", "import", "generic", "--name", "my-shop", "--events", str(events), "--no-pseudonymize",
                 "--map", "user_id=user,item_id=sku,event_type=action,ts=time", "--json", *store]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["data", "list", "--json", *store]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(d["dataset"], d["events"], d["quarantined"]) for d in listed] == [("my_shop", 4, 1)]
    assert main(["data", "stats", "my-shop", "--json", *store]) == 0
    assert json.loads(capsys.readouterr().out)["users"] == 3
    assert main(["data", "quarantine", "my-shop", *store]) == 0
    assert '"bob"' in capsys.readouterr().out
    assert main(["data", "forget", "--dataset", "my-shop", "--user", "bob", "--json", *store]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == {"events": 1, "users": 1, "quarantine": 1}
    reader = open_store(url, read_only=True)
    try:
        assert sorted(set(reader.read("my-shop", "events")["user_id"])) == ["alice", "carol"]
    finally:
        reader.close()


WRITER = """
import json, sys
import pandas as pd
from soutui.data.store import open_store
store = open_store(sys.argv[1])
for n, batch in enumerate(json.loads(open(sys.argv[2]).read())):
    store.append_events("shop", pd.DataFrame(batch))
    print(n, flush=True)  # acknowledged only once the append returned
"""


def test_kill_during_appends_then_replay_stores_each_event_once(url: str, tmp_path: Path) -> None:
    """kill -9 a writer mid-run, replay every batch (as the server's event log does): all there, once."""
    import json
    import random

    rng = random.Random(7)
    batches = [
        [{"event_id": None if rng.random() < 0.2 else f"b{b}-{k}", "user_id": f"u{rng.randint(0, 5)}",
          "item_id": f"i{b}-{k}", "event_type": "view", "ts": 1_700_000_000 + b * 100 + k}
         for k in range(rng.randint(1, 40))]
        for b in range(40)
    ]  # fmt: skip
    (tmp_path / "batches.json").write_text(json.dumps(batches))
    store = open_store(url)
    store.write_dataset("shop", {"events": _events(["seed"])})
    store.close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, url, str(tmp_path / "batches.json")],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    acked = [int(proc.stdout.readline()) for _ in range(8)]
    time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    acked += [int(x) for x in out.split()]
    assert len(acked) < len(batches), "the kill should land mid-run"
    store = open_store(url)
    try:
        stored_before_replay = store.read("shop", "events")
        per_batch = stored_before_replay["item_id"].str.extract(r"^i(\d+)-")[0].dropna().astype(int).value_counts()
        for n in range(len(batches)):  # a batch is in whole or not at all
            assert per_batch.get(n, 0) in (0, len(batches[n]))
        assert all(per_batch.get(n, 0) == len(batches[n]) for n in acked)
        for batch in batches:
            store.append_events("shop", pd.DataFrame(batch))
        stored = store.read("shop", "events")
    finally:
        store.close()
    assert not stored["event_id"].duplicated().any() and len(stored) == 1 + sum(len(b) for b in batches)
