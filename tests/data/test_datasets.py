"""Dataset registry, data-dir lookup order, and the built-in importers on the real files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from soutui.cli import main
from soutui.data import sources
from soutui.data.datasets import DATASETS, candidate_dirs, find_data_dir
from soutui.data.importers import IMPORTERS, build_dataset
from soutui.data.importers.diginetica import read_test_prefixes


def test_registry_is_complete() -> None:
    assert set(IMPORTERS) <= set(DATASETS)
    for d in DATASETS.values():
        assert d.required and all(r in {f.name for f in d.files} for r in d.required)
        assert d.citation and d.license


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag, env = tmp_path / "flag", tmp_path / "env"
    flag.mkdir(), env.mkdir()
    monkeypatch.setenv("SOUTUI_DATA_DIR", str(env))
    assert find_data_dir(flag) == flag.resolve()
    assert find_data_dir() == env.resolve()
    assert [w for w, _ in candidate_dirs(flag)] == [
        "--data-dir", "$SOUTUI_DATA_DIR", "../shared/data (cwd)", "../shared/data (checkout)", "download cache",
    ]  # fmt: skip
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_data_dir(tmp_path / "nope")
    monkeypatch.delenv("SOUTUI_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sources, "_repo_root", lambda: tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="soutui data fetch amazon-beauty"):
        find_data_dir(dataset="amazon-beauty")
    cache = tmp_path / "cache" / "datasets" / "amazon-beauty"
    cache.mkdir(parents=True)
    (cache / "beauty_interactions.tsv").write_text("x")
    assert find_data_dir(dataset="amazon-beauty") == cache.parent.resolve()


def test_homedepot(needs: Callable[[str], Path]) -> None:
    res = build_dataset("homedepot-search", needs("homedepot-search"))
    ev = res.tables["events"]
    assert len(ev) == 74067 and len(res.tables["items"]) == 54667
    assert ev["query"].nunique() == 11793  # 11,795 raw; two differ only by whitespace
    assert res.report.fixed["query_whitespace"] > 0
    assert ev["relevance"].between(1, 3).all() and (ev["event_type"] == "search").all()
    assert ev["user_id"].isna().all() if "user_id" in ev else True


def test_bestbuy(needs: Callable[[str], Path]) -> None:
    res = build_dataset("bestbuy-catalog", needs("bestbuy-catalog"))
    items = res.tables["items"]
    assert res.report.rows_read["items"] == 48194  # backslash-escaped quotes parsed, no extra columns
    assert items["item_id"].is_unique and len(items) + len(res.quarantine) == 48194
    assert set(res.quarantine["reason"]) == {"duplicate_item"}
    assert not items["brand"].str.lower().eq("unknown").any()
    assert items["title"].str.contains('70"', regex=False).any()


def test_diginetica(needs: Callable[[str], Path]) -> None:
    root = needs("diginetica-sessions")
    res = build_dataset("diginetica-sessions", root)
    ev = res.tables["events"]
    assert len(ev) == 906140 and ev["session_id"].nunique() == 186670
    assert len(res.tables["items"]) == 43097 and np.all(np.diff(ev["ts"].to_numpy()) > 0)
    first = (root / "diginetica-sessions" / "train_sessions.txt").read_text().splitlines()[1].split()
    assert ev.loc[ev["session_id"] == "2", "item_id"].tolist() == first
    prefixes, targets = read_test_prefixes(root / "diginetica-sessions" / "test_prefixes.tsv")
    assert len(prefixes) == len(targets) == 60858
    assert list(prefixes[0]) == "21553 20071 8762 21566 6381".split() and targets[0] == "21566"


def test_diginetica_views(needs: Callable[[str], Path]) -> None:
    res = build_dataset("diginetica-views", needs("diginetica-views"))
    ev = res.tables["events"]
    assert len(ev) == 12391 and ev["user_id"].notna().sum() > 0 and ev["user_id"].isna().sum() > 0
    assert not ev["user_id"].eq("NA").any()
    assert ev["ts"].min() >= 1_451_606_400  # 2016


def test_cli_import_report_and_quarantine_export(
    needs: Callable[[str], Path], store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = needs("bestbuy-catalog")
    assert (
        main(["data", "import", "bestbuy-catalog", "--data-dir", str(root), "--store", store_url, "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["quarantined"] == {"duplicate_item": 2038} and report["rows_kept"]["items"] == 46156
    out = tmp_path / "q.jsonl"
    assert main(["data", "quarantine", "bestbuy-catalog", "--store", store_url, "--out", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2038 and set(rows[0]["data"]) == {
        "upc",
        "name",
        "manufacturer",
        "short_description",
        "long_description",
    }
    assert main(["data", "list", "--store", store_url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["items"] == 46156
    assert main(["data", "stats", "bestbuy-catalog", "--store", store_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["quarantined"] == 2038
    # a wrong data dir: one clear line, exit 2
    assert (
        main(["data", "import", "homedepot-search", "--data-dir", str(tmp_path), "--store", store_url]) == 2
    )
    err = capsys.readouterr().err
    assert "train.csv" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_load_dataset_reads_beside_another_reader(tmp_path: Path) -> None:
    """Commands that only read (evaluate beside a running train) must not need the write lock:
    with another process holding the store, load_dataset still reads it."""
    import subprocess
    import sys

    import pandas as pd

    from soutui.data.store import open_store

    url = f"duckdb://{tmp_path / 'store.duckdb'}"
    events = pd.DataFrame({"event_id": ["a", "b"], "user_id": ["u", "u"], "item_id": ["i1", "i2"],
                           "event_type": ["view", "view"], "ts": [1_700_000_000, 1_700_000_100]})  # fmt: skip
    writer = open_store(url)
    writer.write_dataset("shop", {"events": events})
    writer.close()
    held = open_store(url, read_only=True)  # e.g. `soutui train` reading its data
    try:
        code = (
            "import sys; from soutui.data.datasets import load_dataset; "
            "items, ev = load_dataset('shop', store_url=sys.argv[1], progress=False); print(len(ev))"
        )
        out = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, timeout=120)
    finally:
        held.close()
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == "2"
