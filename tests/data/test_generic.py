"""The generic importer: formats, mapping, timestamps, event types, privacy on by default."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from soutui.cli import main
from soutui.data.importers.base import DataError, write_result
from soutui.data.importers.generic import GenericOptions, build, parse_ts
from soutui.data.privacy import PrivacyError, pseudonym
from soutui.data.store import open_store

KEY = "k" * 32
ROWS = [
    {"cust": "alice", "sku": "A", "act": "pageview", "when": "2021-03-01T10:00:00Z", "q": None},
    {"cust": "alice", "sku": "B", "act": "BUY", "when": "1614593000", "q": None},
    {"cust": "bob", "sku": "A", "act": "search", "when": "1614593100000", "q": "call me 13812345678"},
    {"cust": "bob", "sku": "A", "act": "wishlist", "when": "1614593200", "q": None},
    {"cust": "carol", "sku": "Z", "act": "view", "when": "not a date", "q": None},
    {"cust": "carol", "sku": "Z", "act": "view", "when": "1614593300", "q": None},
]
MAPPING = {"user_id": "cust", "item_id": "sku", "event_type": "act", "ts": "when", "query": "q"}


def _write(tmp_path: Path, fmt: str) -> Path:
    df = pd.DataFrame(ROWS)
    path = tmp_path / f"events.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        df.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_formats_mapping_and_cleaning(tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUTUI_PSEUDONYM_KEY", KEY)
    items = tmp_path / "items.csv"
    items.write_text("id,name,price\nA,Lamp,19.9\nB,Chair,-3\n")
    opts = GenericOptions(
        events=str(_write(tmp_path, fmt)), name="shop", items=str(items), mapping=MAPPING,
        item_mapping={"item_id": "id", "title": "name"},
    )  # fmt: skip
    res = build(opts)
    ev = res.tables["events"]
    assert ev["event_type"].tolist() == ["view", "purchase", "search"]
    assert ev["ts"].tolist() == [1614592800, 1614593000, 1614593100]
    assert ev["user_id"].iloc[0] == pseudonym("alice", KEY.encode())
    assert ev["query"].iloc[2] == "call me [PHONE]"
    assert res.report.quarantined == {"bad_event_type": 1, "malformed_ts": 1, "unknown_item": 1}
    assert res.report.privacy == {"pii_masked_phone": 1, "users_pseudonymised": 3}
    assert res.report.fixed == {"bad_price": 1}
    # not even the quarantine holds raw ids or PII
    qdata = " ".join(res.quarantine["data"])
    assert "alice" not in qdata and "bob" not in qdata and "carol" not in qdata


def test_privacy_refuses_without_key_and_can_be_disabled(tmp_path: Path) -> None:
    opts = GenericOptions(events=str(_write(tmp_path, "csv")), name="shop", mapping=MAPPING)
    with pytest.raises(PrivacyError, match="--no-pseudonymize"):
        build(opts)
    opts.pseudonymize, opts.mask_pii = False, False
    ev = build(opts).tables["events"]
    assert "alice" in set(ev["user_id"]) and ev["query"].iloc[2] == "call me 13812345678"


def test_key_never_reaches_the_store(tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUTUI_PSEUDONYM_KEY", KEY)
    write_result(
        build(GenericOptions(events=str(_write(tmp_path, "csv")), name="shop", mapping=MAPPING)), store_url
    )
    path = store_url.removeprefix("duckdb://")
    store = open_store(store_url)
    dumped = json.dumps(store.meta("shop")) + "".join(
        store.read("shop", t).to_csv() for t in ("items", "users", "events", "quarantine")
    )
    store.close()
    assert KEY not in dumped and "alice" not in dumped
    assert KEY.encode() not in Path(path).read_bytes()


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "csv")
    with pytest.raises(DataError, match=r"missing column\(s\) \['nope'\]"):
        build(
            GenericOptions(
                events=str(path), name="x", mapping={**MAPPING, "user_id": "nope"}, pseudonymize=False
            )
        )
    with pytest.raises(DataError, match="not found"):
        build(GenericOptions(events=str(tmp_path / "missing.csv"), name="x", mapping=MAPPING))
    with pytest.raises(DataError, match="event type"):
        build(GenericOptions(events=str(path), name="x", mapping={"item_id": "sku"}, pseudonymize=False))


def test_parse_ts_units() -> None:
    ts, bad = parse_ts(pd.Series(["1614593000", "1614593000123", "2021-03-01", "", None, "soon"]))
    assert ts.tolist()[:3] == [1614593000, 1614593000, 1614556800]
    assert bad.tolist() == [False, False, False, False, False, True]


def test_cli_generic_json(tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "key"
    key.write_text(KEY)
    path = _write(tmp_path, "csv")
    argv = ["data", "import", "generic", "--events", str(path), "--name", "shop", "--store", store_url, "--json",
            "--map", ",".join(f"{k}={v}" for k, v in MAPPING.items()), "--pseudonym-key-file", str(key),
            "--event-type-map", "wishlist=cart"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows_kept"]["events"] == 5 and report["quarantined"] == {"malformed_ts": 1}
    assert (
        main(["data", "import", "generic", "--events", str(path), "--name", "x", "--store", store_url]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("soutui: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
