"""`soutui index build`, `soutui search`, `soutui evaluate-search` on a small labelled dataset in a store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from soutui.cli import UserError, main
from soutui.cli.search_cmd import parse_filters
from soutui.data.store import open_store

from .catalog_fixture import items_frame


def _labelled_events(items: pd.DataFrame) -> pd.DataFrame:
    """Synthetic judgements: a query made of two title words is relevant (3) to its product, irrelevant (1) to others."""
    rows = []
    for i, (iid, title) in enumerate(zip(items["item_id"], items["title"], strict=True)):
        words = title.split()
        for j, q in enumerate({" ".join(words[:2]).lower(), " ".join(words[1:3]).lower()}):
            rows.append(
                {
                    "event_id": f"{i}-{j}-a",
                    "item_id": iid,
                    "event_type": "search",
                    "query": q,
                    "relevance": 3.0,
                }
            )
            other = items["item_id"].iloc[(i + 7) % len(items)]
            rows.append(
                {
                    "event_id": f"{i}-{j}-b",
                    "item_id": other,
                    "event_type": "search",
                    "query": q,
                    "relevance": 1.0,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"duckdb://{tmp_path_factory.mktemp('store') / 's.duckdb'}"
    items = items_frame()
    store = open_store(url)
    try:
        store.write_dataset("shop", {"items": items, "events": _labelled_events(items)})
    finally:
        store.close()
    return url


def test_build_search_and_evaluate(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOUTUI_HOME", str(tmp_path))
    out = tmp_path / "idx"
    assert (
        main(
            [
                "index",
                "build",
                "--dataset",
                "shop",
                "--store",
                store_url,
                "--out",
                str(out),
                "--encoder",
                "minilm",
                "--json",
            ]
        )
        == 0
    )
    built = json.loads(capsys.readouterr().out)
    assert built["items"] == len(items_frame()) and built["ltr"]["train_queries"] > 0
    assert set(built["dense_min_similarity"]) == {"minilm"} and 0 < built["dense_min_similarity"]["minilm"] < 1
    assert (
        main(
            ["search", "cordles drill", "--index", str(out), "--filter", "in_stock=true", "-k", "3", "--json"]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["hits"][0]["title"].startswith("DeWalt") and "instead of 'cordles'" in res["hits"][0]["reason"]
    assert all(h["in_stock"] for h in res["hits"]) and "brand" in res["facets"]
    assert (
        main(
            [
                "evaluate-search",
                "--dataset",
                "shop",
                "--store",
                store_url,
                "--index",
                str(out),
                "--method",
                "ltr",
                "--json",
            ]
        )
        == 0
    )
    ev = json.loads(capsys.readouterr().out)
    assert ev["n_queries"] > 0 and 0.5 < ev["ndcg@10"] <= 1.0 and "by-query" in ev["protocol"]


def test_filter_parsing_errors_are_clear() -> None:
    f = parse_filters(["brand=Bosch", "max_price=10", "in_stock=no"])
    assert (f.brand, f.max_price, f.in_stock) == ("Bosch", 10.0, False)
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_filters(["colour=red"])
    with pytest.raises(UserError, match="needs a number"):
        parse_filters(["max_price=cheap"])


def test_missing_index_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "drill", "--index", str(tmp_path / "none")]) == 2
    assert "soutui index build" in capsys.readouterr().err
