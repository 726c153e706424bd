"""`soutui explain --json`: its exact shape, and attributions that add up to the model's score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from serving_shop import make_home

from soutui.cli import main
from soutui.data.sequences import SequenceData
from soutui.models.itemknn import ItemKNN


def test_explain_json_shape_and_sums(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("SOUTUI_HOME", str(tmp_path / "home"))
    url = make_home(tmp_path, shop)
    base = ["explain", "--dataset", "shop", "--model", "itemknn", "--user", "u1", "--store", url, "--json"]
    assert main(base) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["model", "user_id", "item_id", "reason", "attributions"]
    assert out["model"] == "itemknn" and out["user_id"] == "u1"
    assert all(list(a) == ["kind", "name", "weight"] for a in out["attributions"])
    assert {a["kind"] for a in out["attributions"]} == {"history_item"}
    # its neighbour evidence sums to its score
    data = SequenceData.from_events(shop[1], shop[0])
    u = list(data.user_ids).index("u1")
    knn = ItemKNN().fit(data)
    target = data.item_index[out["item_id"]]
    scores = knn.score([data.sequences[u]])[0]
    outside = scores.copy()
    outside[data.sequences[u]] = -np.inf  # the default item is the top pick outside the history
    assert target == int(outside.argmax())
    assert sum(a["weight"] for a in out["attributions"]) == pytest.approx(scores[target] - knn.prior_[target])
    top = max(out["attributions"], key=lambda a: a["weight"])
    assert out["reason"] == f"because you viewed {top['name']}"

    assert main([*base, "--item", "i5", "--lang", "zh"]) == 0
    zh = json.loads(capsys.readouterr().out)
    assert zh["item_id"] == "i5" and zh["reason"].startswith(("因为你", "根据"))

    # counterfactual: each history item's weight is the top pick's lead over the best other item outside
    # the history, minus that lead once the item is removed
    assert main([*base, "--method", "counterfactual"]) == 0
    cf = json.loads(capsys.readouterr().out)
    hist = np.asarray(data.sequences[u])

    def lead(h: np.ndarray) -> float:
        s = knn.score([h])[0].astype(np.float64)
        others = s.copy()
        others[np.r_[hist, target]] = -np.inf
        return float(s[target] - others.max())

    want = sorted(lead(hist) - lead(np.delete(hist, j)) for j in range(len(hist)))
    assert cf["item_id"] == out["item_id"]
    assert sorted(a["weight"] for a in cf["attributions"]) == pytest.approx(want, abs=1e-9)
    assert main([*base[:-1], "--method", "lime"]) == 0  # the human-readable form, by LIME
    assert "history_item" in capsys.readouterr().out

    assert main([*base[:6], "nobody", *base[7:]]) == 2
    assert "no events" in capsys.readouterr().err
    assert main(["explain", "--dataset", "shop", "--model", "sasrec", "--user", "u1", "--store", url]) == 2
    assert "soutui train" in capsys.readouterr().err
