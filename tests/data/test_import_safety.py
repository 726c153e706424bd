"""Bad input gets a clear answer: one bad line costs that line, and no import silently wipes a dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from soutui.cli import main
from soutui.data.importers.base import DataError, write_result
from soutui.data.importers.generic import GenericOptions, build
from soutui.data.store import ImportRefused, open_store

HEADER = "user_id,item_id,event_type,ts,query\n"
GOOD = "".join(f"u{k % 3},i{k},view,{1_700_000_000 + k},\n" for k in range(6))


def _opts(path: Path, name: str = "shop", **kw: object) -> GenericOptions:
    return GenericOptions(events=str(path), name=name, pseudonymize=False, **kw)  # type: ignore[arg-type]


def _csv(tmp_path: Path, text: str, name: str = "events.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_excel_bom_header_is_read(tmp_path: Path) -> None:
    res = build(_opts(_csv(tmp_path, "\ufeff" + HEADER + GOOD)))
    assert len(res.tables["events"]) == 6 and not res.report.quarantined


def test_bad_lines_are_quarantined_with_line_numbers(tmp_path: Path) -> None:
    text = HEADER + GOOD[:0] + "u1,i1,view,1700000001,\n"
    text += 'u2,i2,view,1700000002,"unbalanced\n'  # line 3: a quote that never closes
    text += "u3,i3,view,1700000003,,extra\n"  # line 4: one field too many
    text += "u4,i4,view,1700000004," + "x" * 200_000 + "\n"  # line 5: over the csv field limit
    text += 'u5,i5,search,1700000005,"a, quoted\nquery"\n'  # lines 6-7: a legitimate multi-line field
    text += "u6,i6,view,1700000006,\n"  # line 8
    res = build(_opts(_csv(tmp_path, text)))
    ev = res.tables["events"]
    assert ev["item_id"].tolist() == ["i1", "i5", "i6"]
    assert ev["query"].tolist()[1] == "a, quoted\nquery"
    q = res.quarantine
    assert q["reason"].tolist() == ["bad_line"] * 3 and q["row"].tolist() == ["3", "4", "5"]
    problems = [json.loads(d)["problem"] for d in q["data"]]
    assert problems[0] == "unbalanced quote" and "6 fields" in problems[1] and "131,072" in problems[2]
    assert res.report.quarantined == {"bad_line": 3} and res.report.rows_read["events"] == 6


def test_broken_jsonl_line_is_quarantined(tmp_path: Path) -> None:
    lines = [json.dumps({"user_id": "a", "item_id": f"i{k}", "event_type": "view", "ts": 1_700_000_000 + k})
             for k in range(4)]  # fmt: skip
    lines.insert(2, '{"user_id": "b", "item_id": ')  # line 3
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    res = build(_opts(path))
    assert len(res.tables["events"]) == 4
    assert res.quarantine["row"].tolist() == ["3"] and res.report.quarantined == {"bad_line": 1}


def test_gbk_needs_encoding_and_the_hint_names_it(tmp_path: Path) -> None:
    path = _csv(tmp_path, HEADER + "u1,i1,search,1700000000,连衣裙\n", encoding="gbk")
    with pytest.raises(DataError, match=r"not utf-8 text .*line 2.*--encoding gbk"):
        build(_opts(path))
    res = build(_opts(path, encoding="gbk"))
    assert res.tables["events"]["query"].tolist() == ["连衣裙"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"is empty \(no header line, no rows\)"),
        (HEADER, r"has a header \(user_id, .*\) but no data rows"),
    ],
)
def test_empty_and_header_only_csv_one_line_error(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = _csv(tmp_path, text)
    argv = ["data", "import", "generic", "--events", str(path), "--name", "s", "--store", store_url,
            "--no-pseudonymize"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert pd.Series([err]).str.contains(message).all(), err


def test_nul_ids_empty_ts_and_nested_parquet_are_counted(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "user_id": ["a", "b\x00", "c", "d", "e"],
            "item_id": ["i1", "i2", "i3", "i4", "i5"],
            "event_type": "view",
            "ts": [1_700_000_000.0, 1_700_000_001.0, None, 1_700_000_003.0, 1_700_000_004.0],
            "query": [None, None, None, None, None],
        }
    )
    path = tmp_path / "events.parquet"
    df.to_parquet(path)
    res = build(_opts(path))
    assert res.tables["events"]["user_id"].tolist() == ["a", "d", "e"]
    assert res.tables["events"]["ts"].tolist() == [1_700_000_000, 1_700_000_003, 1_700_000_004]
    assert res.report.quarantined == {"missing_ts": 1, "nul_in_id": 1}
    assert res.report.fixed == {"parquet_float64_ts": 4}  # float seconds read as whole seconds
    nested = df.assign(item_id=[["i1"], "i2", "i3", {"x": 1}, "i5"], user_id=list("abcde"))
    nested.to_json(tmp_path / "nested.jsonl", orient="records", lines=True)
    res = build(_opts(tmp_path / "nested.jsonl"))
    assert res.report.quarantined["nested_value"] == 2
    assert "i1" not in set(res.tables["events"]["item_id"].astype(str))


def test_judgments_and_search_events_need_no_user(tmp_path: Path) -> None:
    path = _csv(tmp_path, "query,item_id,relevance\nlamp,i1,3\nlamp,i2,1\nsofa,i3,2\n")
    res = build(_opts(path))  # judgments are search events without being told
    assert len(res.tables["events"]) == 3 and not res.report.quarantined
    assert set(res.tables["events"]["event_type"]) == {"search"}
    assert any("no ts column" in w for w in res.report.warnings)
    views = build(_opts(_csv(tmp_path, "item_id\ni1\n", name="v.csv"), event_type="view"))
    assert views.report.quarantined == {"missing_user": 1}  # a view needs a person


def test_search_log_without_an_item_column(tmp_path: Path) -> None:
    """Searches that led to no click have no item: the log imports without that column, and
    any non-search row in it is quarantined as missing_item, not refused file-wide."""
    path = _csv(tmp_path, "query,event_type,ts\nlamp,search,1700000000\nsofa,search,1700000100\n,view,1700000200\n")
    res = build(_opts(path))
    assert len(res.tables["events"]) == 2 and set(res.tables["events"]["event_type"]) == {"search"}
    assert res.report.quarantined == {"missing_item": 1}


def test_quarantine_is_pseudonymised_and_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUTUI_PSEUDONYM_KEY", "k" * 32)
    text = "user_id,session_id,item_id,event_type,ts,query,email\n"
    text += "alice@example.com,sess-9,i1,wishlist,1700000000,call 13812345678,alice@example.com\n"
    text += "bob,sess-8,i2,view,1700000001,,bob@example.com\n"
    res = build(GenericOptions(events=str(_csv(tmp_path, text)), name="shop"))
    assert res.report.quarantined == {"bad_event_type": 1}
    dumped = res.quarantine.to_csv() + res.tables["events"].to_csv()
    for raw in ("alice", "bob", "sess-9", "sess-8", "13812345678", "example.com"):
        assert raw not in dumped
    assert "[PHONE]" in dumped


def test_refusals_with_numbers_and_replace(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_result(build(_opts(_csv(tmp_path, HEADER + GOOD))), store_url)
    judged = _csv(tmp_path, "query,item_id,event_type\nlamp,i1,view\n", name="j.csv")  # every row quarantined
    with pytest.raises(ImportRefused, match="keeps 0 of 1 events read"):
        write_result(build(_opts(judged)), store_url)
    argv = ["data", "import", "generic", "--events", str(_csv(tmp_path, HEADER + "".join(GOOD.splitlines(True)[:2]), name="small.csv")),
            "--name", "shop", "--store", store_url, "--no-pseudonymize"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "drop 4 of its 6 stored events (67%)" in err and "--replace" in err and len(err.splitlines()) == 1
    assert main([*argv, "--replace"]) == 0
    capsys.readouterr()
    assert main([*argv[:6], "my-shop", *argv[7:]]) == 0  # a new, distinct name is fine
    assert main([*argv[:6], "my_shop", *argv[7:]]) == 2
    assert "collides with the stored dataset 'my-shop'" in capsys.readouterr().err
    store = open_store(store_url, read_only=True)
    try:
        assert len(store.read("shop", "events")) == 2 and len(store.read("my-shop", "events")) == 2
    finally:
        store.close()


def test_forget_cli(tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "key"
    key.write_text("s" * 32)
    text = "user_id,item_id,event_type,ts,query\n"
    text += "".join(f"{u},i{k},view,{1_700_000_000 + k},\n" for k, u in enumerate(["carol@x.org", "dan"] * 4))
    text += "carol@x.org,i9,teleport,1700000100,\n"  # quarantined, pseudonymised
    path = _csv(tmp_path, text)
    common = ["--store", store_url, "--pseudonym-key-file", str(key)]
    assert main(["data", "import", "generic", "--events", str(path), "--name", "shop", *common]) == 0
    capsys.readouterr()
    assert main(["data", "forget", "--dataset", "shop", "--user", "carol@x.org", "--json", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["deleted"] == {"events": 4, "users": 1, "quarantine": 1} and out["pending_rebuild"]
    from soutui.data.privacy import pseudonym

    pid = pseudonym("carol@x.org", key.read_bytes().strip())
    store = open_store(store_url)
    try:
        assert set(store.read("shop", "events")["user_id"]) == {pseudonym("dan", key.read_bytes().strip())}
        assert len(store.pending_forget("shop")) == 1
    finally:
        store.close()
    raw = Path(store_url.removeprefix("duckdb://")).read_bytes()
    assert b"carol" not in raw and pid.encode() not in raw


def test_blank_event_id_is_filled_and_counted(tmp_path: Path) -> None:
    text = "event_id,user_id,item_id,event_type,ts\ne1,a,i1,view,1700000000\n,a,i2,view,1700000001\n"
    res = build(_opts(_csv(tmp_path, text)))
    ids = res.tables["events"]["event_id"]
    assert ids.iloc[0] == "e1" and len(ids.iloc[1]) == 20 and res.report.fixed == {"blank_event_id": 1}
    assert build(_opts(_csv(tmp_path, text))).tables["events"]["event_id"].iloc[1] == ids.iloc[1]  # stable


def test_nested_parquet_values_are_quarantined(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {"user_id": ["a", "b", "c"], "item_id": ["i1", "i2", "i3"], "event_type": "view",
         "session_id": [["s1", "s2"], None, ["s3"]]}
    )  # fmt: skip
    path = tmp_path / "events.parquet"
    df.to_parquet(path)
    res = build(_opts(path))
    assert res.report.quarantined == {"nested_value": 2}
    assert res.tables["events"]["user_id"].tolist() == ["b"]


def test_items_jsonl_with_nested_attributes_and_unmapped_columns(tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    rows = [{"item_id": "i1", "title": "Lamp", "attributes": {"colour": "red", "sizes": [1, 2]}, "owner": "x@y.com"},
            {"item_id": "i1", "title": "Lamp again", "attributes": None, "owner": "z@y.com"}]  # fmt: skip
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    events = _csv(tmp_path, HEADER + "u1,i1,view,1700000000,\n")
    res = build(_opts(events, items=str(items)))
    assert json.loads(res.tables["items"]["attributes"].iloc[0]) == {"colour": "red", "sizes": [1, 2]}
    assert res.report.quarantined == {"duplicate_item": 1}
    assert "y.com" not in res.quarantine.to_csv()  # the unmapped column is not kept
