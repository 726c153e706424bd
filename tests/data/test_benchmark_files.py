"""Importers for benchmark files: RecBole atomic files and S3-Rec sequence files (issue 15)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from soutui.cli import main
from soutui.data.datasets import load_dataset
from soutui.data.importers import recbole, s3rec
from soutui.data.importers.base import DataError
from soutui.data.sequences import SequenceData


def _sequences(store_url: str, name: str, group: str = "user_id") -> dict[str, list[str]]:
    items, events = load_dataset(name, store_url=store_url, progress=False)
    data = SequenceData.from_events(events, items, group=group)
    return {
        str(u): [str(data.item_ids[i]) for i in s] for u, s in zip(data.user_ids, data.sequences, strict=True)
    }


def test_s3rec_file_round_trips_through_the_store(tmp_path: Path, store_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "seqs.txt"
    f.write_text("1 5 3 9\n2 3 3 12 5\n\n10 7 1\n")  # a repeated item, ids out of order, a blank line
    rc = main(["data", "import", "s3rec", "--file", str(f), "--name", "s3", "--store", store_url, "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows_kept"] == {"items": 6, "users": 3, "events": 9}
    assert _sequences(store_url, "s3") == {"1": ["5", "3", "9"], "2": ["3", "3", "12", "5"], "10": ["7", "1"]}


def test_s3rec_refuses_a_user_on_two_lines(tmp_path: Path) -> None:
    f = tmp_path / "dup.txt"
    f.write_text("1 5 3\n1 9\n")
    with pytest.raises(DataError, match="user '1' has more than one line"):
        s3rec.build(f, "x")


def test_s3rec_beauty_gives_back_the_benchmark_sequences(needs: Callable[[str], Path]) -> None:
    path = next(iter(needs("amazon-beauty").rglob("Beauty.txt")), None)
    if path is None:
        pytest.skip("Beauty.txt not found (../shared/data/amazon-beauty)")
    result = s3rec.build(path, "beauty")
    tables = result.tables
    data = SequenceData.from_events(tables["events"], tables["items"])
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    assert data.n_users == len(lines) == 22363 and data.n_items == 12101 and data.n_interactions == 198502
    got = {
        str(u): [str(data.item_ids[i]) for i in s] for u, s in zip(data.user_ids, data.sequences, strict=True)
    }
    assert got == {ln[0]: ln[1:] for ln in lines}
    assert result.report.quarantined == {}


INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "u1\ti3\t5.0\t1600000300\n"
    "u1\ti1\t4.0\t1600000100\n"
    "u2\ti2\t3.0\t1600000050.7\n"
    "u1\ti2\t5.0\t1600000300\n"  # same time as i3: file order breaks the tie
    "u2\ti9\t1.0\t1600000060\n"  # not in the .item file: still an item
)
ITEM = (
    "item_id:token\ttitle:token_seq\tcategories:token_seq\tbrand:token\tprice:float\tsales_rank:float\n"
    "i1\tRose lip balm\tBeauty Lips\tAcme\t3.5\t17\n"
    "i2\tNight cream\tBeauty Skin\t\t12\t\n"
    "i3\tHair oil\tBeauty Hair\tOrbo\tn/a\t4\n"
)


def test_recbole_atomic_files(tmp_path: Path, store_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "d.inter").write_text(INTER)
    (tmp_path / "d.item").write_text(ITEM)
    rc = main(["data", "import", "recbole", "--inter", str(tmp_path / "d.inter"), "--item", str(tmp_path / "d.item"),
               "--name", "rb", "--store", store_url, "--json"])  # fmt: skip
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows_kept"]["events"] == 5 and any("rating" in n for n in report["notes"])
    assert _sequences(store_url, "rb") == {"u1": ["i1", "i3", "i2"], "u2": ["i2", "i9"]}
    items, events = load_dataset("rb", store_url=store_url, progress=False)
    by_id = items.set_index("item_id")
    assert by_id.loc["i1", "title"] == "Rose lip balm" and by_id.loc["i1", "brand"] == "Acme"
    assert by_id.loc["i1", "price"] == pytest.approx(3.5) and by_id.loc["i3", "category"] == "Beauty Hair"
    assert json.loads(by_id.loc["i1", "attributes"]) == {"sales_rank": "17"}
    assert "i9" in by_id.index and sorted(events["ts"].dropna().astype(int) - 1600000000) == [
        50,
        60,
        100,
        300,
        300,
    ]


def test_recbole_sessions_and_bad_headers(tmp_path: Path) -> None:
    f = tmp_path / "s.inter"
    f.write_text(
        "session_id:token\titem_id:token\ttimestamp:float\ns1\ta\t1600000002\ns1\tb\t1600000001\ns2\ta\t1600000005\n"
    )
    result = recbole.build(f, "sess")
    assert result.meta["group"] == "session_id" and "users" not in result.tables
    data = SequenceData.from_events(result.tables["events"], result.tables["items"], group="session_id")
    assert [[str(data.item_ids[i]) for i in s] for s in data.sequences] == [["b", "a"], ["a"]]
    assert data.timestamps is not None and np.array_equal(data.timestamps[0], [1600000001, 1600000002])
    bad = tmp_path / "bad.inter"
    bad.write_text("user_id\titem_id\nu\ti\n")
    with pytest.raises(DataError, match="name:type"):
        recbole.build(bad, "bad")
    no_item = tmp_path / "noitem.inter"
    no_item.write_text("user_id:token\trating:float\nu\t3\n")
    with pytest.raises(DataError, match="needs item_id:token"):
        recbole.build(no_item, "bad")
