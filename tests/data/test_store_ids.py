"""Every stored event has an id, de-duplication is NULL-safe, and no acknowledged event is lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from soutui.data.schema import content_ids
from soutui.data.store import StoreLockedError, open_store


def _events(ids: list[str | None], user: str = "u1") -> pd.DataFrame:
    return pd.DataFrame(
        {"event_id": ids, "user_id": user, "item_id": [f"i{k}" for k in range(len(ids))],
         "event_type": "view", "ts": [1_700_000_000 + k for k in range(len(ids))]}
    )  # fmt: skip


def test_blank_id_gets_content_id_and_appends_still_work(store_url: str) -> None:
    store = open_store(store_url)
    try:
        store.write_dataset("shop", {"events": _events(["a", None, "  "])})
        stored = store.read("shop", "events")
        assert stored["event_id"].notna().all() and (stored["event_id"].str.strip() != "").all()
        assert stored["event_id"].iloc[1] == content_ids(stored.iloc[[1]]).iloc[0]
        # the old `NOT IN (SELECT ...)` inserted nothing once one stored id was NULL
        assert store.append_events("shop", _events(["b", "c"], user="u2")) == 2
        assert store.append_events("shop", _events(["b", "c", None], user="u2")) == 1  # the blank one is new
        assert store.append_events("shop", _events(["b", "c", None], user="u2")) == 0  # ... and now known
        assert len(store.read("shop", "events")) == 6
    finally:
        store.close()


def test_store_with_null_ids_is_repaired_on_open(store_url: str) -> None:
    path = store_url.removeprefix("duckdb://")
    store = open_store(store_url)
    store.write_dataset("shop", {"events": _events(["a", "b"])})
    store.close()
    con = duckdb.connect(path)  # what an older soutui left behind
    con.execute("UPDATE shop__events SET event_id = NULL WHERE event_id = 'b'")
    con.close()
    store = open_store(store_url)
    try:
        ids = store.read("shop", "events")["event_id"]
        assert ids.notna().all()
        assert store.append_events("shop", _events(["x"], user="u9")) == 1
    finally:
        store.close()


HOLDER = """
import sys, time
from soutui.data.store import open_store
s = open_store(sys.argv[1], read_only=sys.argv[2] == "ro")
print("open", flush=True)
time.sleep(30)
"""


def _hold(store_url: str, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, store_url, mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    return proc


def test_locked_store_names_the_holder_and_readers_share(store_url: str) -> None:
    open_store(store_url).close()
    proc = _hold(store_url, "rw")
    try:
        with pytest.raises(StoreLockedError, match=rf"in use by process {proc.pid} \(.*python"):
            open_store(store_url, read_only=True)
    finally:
        proc.kill()
        proc.wait()
    proc = _hold(store_url, "ro")
    try:
        open_store(store_url, read_only=True).close()  # two readers at once
    finally:
        proc.kill()
        proc.wait()


WRITER = """
import sys, json
import pandas as pd
from soutui.data.store import open_store
url, batches = sys.argv[1], json.loads(open(sys.argv[2]).read())
for n, batch in enumerate(batches):
    store = open_store(url)
    store.append_events("shop", pd.DataFrame(batch))
    store.close()
    print(n, flush=True)  # acknowledged only once the append returned
"""


def _batches(rng: random.Random, n: int) -> list[list[dict[str, object]]]:
    out = []
    for b in range(n):
        rows = []
        for k in range(rng.randint(1, 40)):
            eid = None if rng.random() < 0.2 else f"b{b}-{k}"  # blank ids too
            rows.append({"event_id": eid, "user_id": f"u{rng.randint(0, 5)}", "item_id": f"i{b}-{k}",
                         "event_type": "view", "ts": 1_700_000_000 + b * 100 + k})  # fmt: skip
        out.append(rows)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_kill_during_sync_loses_no_acknowledged_event(store_url: str, seed: int, tmp_path: Path) -> None:
    """kill -9 the writer at a random point, replay everything (as the server's log does): all once."""
    import json

    rng = random.Random(seed)
    store = open_store(store_url)
    store.write_dataset("shop", {"events": _events(["seed"])})
    store.close()
    batches = _batches(rng, 60)
    batch_file = tmp_path / "batches.json"
    batch_file.write_text(json.dumps(batches))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), store_url, str(batch_file)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    acked, kill_after = [], rng.randint(3, len(batches) - 10)
    while len(acked) < kill_after:
        acked.append(int(proc.stdout.readline()))
    time.sleep(rng.uniform(0, 0.05))  # land somewhere inside a later append
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    acked += [int(x) for x in out.split()]
    assert 0 < len(acked) < len(batches), "the kill should land mid-run"
    store = open_store(store_url)  # a restart: replay every batch, acknowledged or not
    try:
        for batch in batches:
            store.append_events("shop", pd.DataFrame(batch))
        stored = store.read("shop", "events")
    finally:
        store.close()
    assert stored["event_id"].notna().all() and not stored["event_id"].duplicated().any()
    items = stored["item_id"].value_counts()
    for n in acked:
        for row in batches[n]:
            assert items.get(row["item_id"], 0) == 1
    assert len(stored) == 1 + sum(len(b) for b in batches)


def test_cli_on_a_locked_store_is_one_line(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from soutui.cli import main

    store = open_store(store_url)
    store.write_dataset("shop", {"events": _events(["a"])})
    store.close()
    proc = _hold(store_url, "rw")  # e.g. `soutui train` loading data
    try:
        assert main(["data", "stats", "shop", "--store", store_url]) == 2
    finally:
        proc.kill()
        proc.wait()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"in use by process {proc.pid}" in err and "--store" in err
    assert main(["data", "stats", "shop", "--store", store_url, "--json"]) == 0  # free again


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


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.8])
def test_kill_during_import_keeps_old_or_new_dataset_whole(store_url: str, delay: float) -> None:
    store = open_store(store_url)
    store.write_dataset("shop", {"events": _events([f"old{k}" for k in range(100)])})
    store.close()
    proc = subprocess.Popen([sys.executable, "-c", IMPORTER, store_url], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    store = open_store(store_url)
    try:
        ids = store.read("shop", "events")["event_id"]
        assert len(ids) in (100, 200_000)  # all of the old or all of the new, never a mix
        assert ids.str.startswith("old" if len(ids) == 100 else "new").all()
        assert len(ids) == 200_000 or "done" not in out
        assert store.append_events("shop", _events(["after"], user="u7")) == 1
    finally:
        store.close()
