"""Issue 11's done-when checks for experiments, on real Amazon Beauty held-out users:
`soutui experiment simulate --a popularity --b itemknn --method interleave --json` names b,
and the A/A experiment itemknn vs itemknn names no winner (both with the command's defaults:
2,000 users, seed 0, each shopper visiting as often as their served history has events; the
verdict is the user-level test). `--visits 1` keeps the single-visit shopper."""

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


def _simulate(store: str, a: str, b: str, capsys: pytest.CaptureFixture[str], *more: str) -> dict:  # type: ignore[type-arg]
    argv = ["experiment", "simulate", "--dataset", "amazon-beauty", "--a", a, "--b", b, "--method", "interleave",
            "--json", "--store", store, *more]
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_interleaving_names_itemknn_over_popularity(beauty_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _simulate(beauty_store, "popularity", "itemknn", capsys)
    assert out["winner"] == "b" and out["p_value"] < 0.05 and out["users"] == 2000
    assert out["users_to_significance"] is not None and out["users_to_significance"] <= 2000
    wins = out["report"]["wins"]
    assert wins["b"] > wins["a"] and sum(wins.values()) == out["impressions"]
    assert out["visits"] == "data" and out["impressions"] > 3 * out["users"]  # Beauty users have >= 4 events
    prefs = out["test"]["preferences"]  # the verdict is per user: one preference each
    assert sum(prefs.values()) == out["report"]["users"] == 2000 and prefs["b"] > prefs["a"]


def test_a_against_itself_names_no_winner(beauty_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _simulate(beauty_store, "itemknn", "itemknn", capsys)
    assert out["winner"] is None and out["p_value"] >= 0.05 and out["users_to_significance"] is None
    assert out["report"]["wins"]["a"] + out["report"]["wins"]["b"] > 50  # decided impressions were there to judge



def test_the_single_visit_shopper_and_a_b_at_the_user_level(beauty_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _simulate(beauty_store, "popularity", "itemknn", capsys, "--visits", "1", "--method", "ab", "--users", "1000")
    assert out["visits"] == 1 and out["impressions"] == out["users"] == 1000
    t = out["test"]
    assert t["method"].startswith("Welch") and sum(t["users"].values()) == 1000
    arms = out["report"]["arms"]  # one visit each: mean clicks per user and CTR differ only by extra (noise) clicks
    assert abs(t["diff"] - (arms["b"]["ctr"] - arms["a"]["ctr"])) < 0.03 and out["p_value"] == t["p_value"]
