"""Issue 11's done-when checks for experiments, on real Amazon Beauty held-out users:
`soutui experiment simulate --a popularity --b itemknn --method interleave --json` names b,
and the A/A experiment itemknn vs itemknn names no winner (both with the command's defaults:
2,000 users, seed 0)."""

from __future__ import annotations

import json

import pytest

from soutui.cli import main


@pytest.fixture(scope="module")
def beauty_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    from soutui.data.sources import find_data_dir

    try:
        find_data_dir(dataset="amazon-beauty")
    except Exception:
        pytest.skip("real Amazon Beauty data not found (../shared/data)")
    url = f"duckdb://{tmp_path_factory.mktemp('beauty') / 'store.duckdb'}"
    assert main(["data", "import", "amazon-beauty", "--store", url]) == 0
    return url


def _simulate(store: str, a: str, b: str, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    argv = ["experiment", "simulate", "--dataset", "amazon-beauty", "--a", a, "--b", b, "--method", "interleave",
            "--json", "--store", store]
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_interleaving_names_itemknn_over_popularity(beauty_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _simulate(beauty_store, "popularity", "itemknn", capsys)
    assert out["winner"] == "b" and out["p_value"] < 0.05 and out["users"] == 2000
    assert out["users_to_significance"] is not None and out["users_to_significance"] <= 2000
    wins = out["report"]["wins"]
    assert wins["b"] > wins["a"] and sum(wins.values()) == out["impressions"]


def test_a_against_itself_names_no_winner(beauty_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _simulate(beauty_store, "itemknn", "itemknn", capsys)
    assert out["winner"] is None and out["p_value"] >= 0.05 and out["users_to_significance"] is None
    assert out["report"]["wins"]["a"] + out["report"]["wins"]["b"] > 50  # decided impressions were there to judge

