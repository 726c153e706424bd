"""The serving method is chosen on validation queries carved from the training queries.

Two judged sets on the same small catalogue have a known right answer: model numbers and
codes (BM25 finds the exact token; dense is close but not perfect) and paraphrases that
share no word with the titles (only dense can answer). The choice must follow validation
on each, be stored in the manifest, become the default method, and never read the test
split (`index build` gives the same choice when the test queries' judgments are garbage).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soutui.cli import main
from soutui.data.store import open_store
from soutui.search import evaluation
from soutui.search import features as feats
from soutui.search.engine import SearchEngine
from soutui.search.ltr import choose_capacity

from .catalog_fixture import item_id, items_frame

CODES = {  # query -> title prefixes of the relevant products
    "wh-1000xm5": ["Sony WH", "索尼 WH"], "m18": ["Milwaukee"], "mx master": ["Logitech", "罗技"],
    "x1": ["联想"], "v12": ["戴森"], "60w": ["Philips"], "12-gauge": ["Simpson"], "lxt": ["Makita"],
    "ultraboost": ["阿迪达斯"], "thinkpad": ["联想"], "15 pro": ["Apple"], "mate 60": ["华为"],
    "20v max": ["DeWalt"], "550ml": ["农夫山泉"], "1.5匹": ["美的"], "32cm": ["苏泊尔"],
}  # fmt: skip
PARAPHRASES = {
    "television": ["Samsung"], "cellular telephone": ["Apple", "华为", "小米 14", "苹果"],
    "jogging sneakers": ["Nike", "耐克", "阿迪达斯"], "lavatory": ["Kohler", "American Standard"],
    "boiler": ["Rheem"], "sink tap": ["Glacier"], "timber varnish": ["BEHR"],
    "earmuffs for music": ["Sony WH", "索尼 WH"], "computer rodent": ["Logitech", "罗技"],
    "heating control": ["Honeywell"], "laptop": ["联想"], "vacuum cleaner": ["戴森"],
    "bottled water": ["农夫山泉"], "badminton racket": ["李宁"], "air conditioner": ["美的", "格力"],
    "washing machine": ["西门子"], "air purifier": ["小米空气", "飞利浦"], "fridge": ["海尔"],
}  # fmt: skip


def _qrels(judged: dict[str, list[str]]) -> evaluation.Qrels:
    return {q: {item_id(p): 2.0 for p in prefixes} for q, prefixes in judged.items()}


@pytest.fixture()
def fresh(engine_dir: Path, tmp_path: Path) -> SearchEngine:
    """A private copy of the session index (the choice writes the manifest)."""
    import shutil

    shutil.copytree(engine_dir, tmp_path / "idx")
    return SearchEngine.load(tmp_path / "idx")


@pytest.mark.parametrize(("judged", "right"), [(CODES, "bm25"), (PARAPHRASES, "dense")])
def test_choice_follows_validation(fresh: SearchEngine, judged: dict[str, list[str]], right: str) -> None:
    choice = evaluation.choose_method(fresh, _qrels(judged), valid_frac=0.5, ltr=False, progress=False)
    valid = {m: f["ndcg@10"] for m, f in choice["valid"].items()}  # type: ignore[attr-defined]
    assert set(valid) == {"bm25", "dense", "hybrid"}  # no ranker trained: ltr is not a candidate
    assert choice["chosen"] == right and valid[right] == max(valid.values())
    other = "dense" if right == "bm25" else "bm25"
    assert valid[right] > valid[other] + 0.04  # the right answer wins clearly, not by a tie-break
    assert choice["valid_queries"] == round(len(judged) / 2) and choice["fit_queries"] == len(judged) - round(
        len(judged) / 2
    )
    # stored in the manifest and used when a caller names no method; an explicit one still overrides
    again = SearchEngine.load(fresh.out_dir)
    assert again.default_method == right and again.manifest["method_choice"]["chosen"] == right
    q = next(iter(judged))
    assert [h.item_id for h in again.search(q)[0]] == [h.item_id for h in again.search(q, method=right)[0]]
    assert again.rank(q, other).scores.tolist() != again.rank(q).scores.tolist()


def test_too_few_queries_to_validate_is_an_error(fresh: SearchEngine) -> None:
    with pytest.raises(ValueError, match="too few"):
        evaluation.choose_method(fresh, _qrels({"m18": ["Milwaukee"]}), ltr=False, progress=False)


def test_small_judgment_set_sets_ranker_capacity_by_cross_validation() -> None:
    rng = np.random.default_rng(0)
    n_q = 60
    x = rng.normal(size=(n_q * 15, len(feats.FEATURES))).astype(np.float32)
    gain = np.clip(np.round((x[:, 0] + 0.5 * x[:, 1]) * 2) / 3, 0, 2)
    ranker, info = choose_capacity(x, gain, [15] * n_q)
    assert info["selection"].startswith("3-fold by query") and len(info["grid"]) == 3
    best = max(info["grid"], key=lambda r: r["valid_ndcg@10"])
    assert (info["num_leaves"], info["min_data_in_leaf"]) == (best["num_leaves"], best["min_data_in_leaf"])
    assert ranker.n_trees == info["n_trees"] == max(1, best["n_trees"]) and info["n_trees"] > 3
    assert list(ranker.importance())[:2] == [feats.FEATURES[0], feats.FEATURES[1]]


def _events(items: pd.DataFrame, poison: set[str] | None = None) -> pd.DataFrame:
    """Two-title-word queries relevant (3) to their product; `poison` queries judge a wrong product instead."""
    rows = []
    ids = items["item_id"].tolist()
    for i, (iid, title) in enumerate(zip(ids, items["title"], strict=True)):
        words = title.split()
        for j, q in enumerate(sorted({" ".join(words[:2]).lower(), " ".join(words[1:3]).lower()})):
            good = ids[(i + 11) % len(ids)] if poison and q in poison else iid
            rows.append(
                {
                    "event_id": f"{i}-{j}",
                    "item_id": good,
                    "event_type": "search",
                    "query": q,
                    "relevance": 3.0,
                }
            )
    return pd.DataFrame(rows)


def test_index_build_never_reads_the_test_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOUTUI_HOME", str(tmp_path))
    items = items_frame()
    _, test = evaluation.split(evaluation.qrels_from_events(_events(items)))
    url = f"duckdb://{tmp_path / 's.duckdb'}"
    store = open_store(url)
    try:
        store.write_dataset("clean", {"items": items, "events": _events(items)})
        store.write_dataset("poisoned", {"items": items, "events": _events(items, poison=set(test))})
    finally:
        store.close()
    reports = []
    for name in ("clean", "poisoned"):
        out = tmp_path / name
        argv = [
            "index",
            "build",
            "--dataset",
            name,
            "--store",
            url,
            "--out",
            str(out),
            "--encoder",
            "minilm",
            "--json",
        ]
        assert main(argv) == 0
        reports.append(json.loads(capsys.readouterr().out))
        manifest = json.loads((out / "manifest.json").read_text())
        assert (
            manifest["search_method"] == reports[-1]["search_method"] == manifest["method_choice"]["chosen"]
        )
    clean, poisoned = reports
    assert (
        clean["method_choice"] == poisoned["method_choice"]
        and clean["ltr"]["capacity"] == poisoned["ltr"]["capacity"]
    )
    assert set(clean["method_choice"]["valid"]) == {"bm25", "dense", "hybrid", "ltr"}
    assert clean["ltr"]["capacity"]["n_trees"] >= 1 and len(clean["ltr"]["capacity"]["grid"]) == 3
    # the test split does differ: evaluate-search on it tells the two datasets apart
    scores = []
    for name in ("clean", "poisoned"):
        argv = [
            "evaluate-search",
            "--dataset",
            name,
            "--store",
            url,
            "--index",
            str(tmp_path / name),
            "--json",
        ]
        assert main(argv) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["method"] == clean["search_method"]
        scores.append(res["ndcg@10"])
    assert scores[0] > scores[1] + 0.3
