"""A DP bundle (issue 12 §2): nothing fitted outside the accounting is shipped or served.

`soutui bundle build` with a SASRec checkpoint trained with DP-SGD leaves item-kNN out, ships popularity
as a private count release, states the composed privacy, and the server's trending fallback serves that
release instead of live counts (a burst of one user's events does not move it).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from opacus.accountants import RDPAccountant
from serving_shop import API_KEY, make_home

from soutui.data.sequences import SequenceData
from soutui.models.itemknn import ItemKNN
from soutui.models.mlp import MLPRecommender
from soutui.serving.app import create_app
from soutui.serving.bundle import read_manifest
from soutui.serving.bundle_build import (
    CountPrivacy,
    build_from_dataset,
    catalogue_in_index_order,
    write_bundle,
)
from soutui.serving.settings import ServeSettings
from soutui.training.dp_counts import private_popularity
from soutui.training.trainer import LoopTrainer

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from sasrec_fixtures import SMALL, sasrec  # noqa: E402

DP = {"dp_epsilon": 4.0, "dp_delta": 1e-3, "dp_clip": 1.0}
H = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def dp_bundle(tmp_path_factory: pytest.TempPathFactory, shop: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[Path, str]:
    """(bundle, store URL): the shop built with a SASRec checkpoint trained with DP-SGD."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("dp")
    url = make_home(tmp, shop)
    data = SequenceData.from_events(shop[1], shop[0])
    sasrec(**SMALL, **DP, epochs=2).fit(data).save(tmp / "ckpt")
    path = build_from_dataset("shop", tmp / "bundles", store_url=url, sasrec=str(tmp / "ckpt"), with_search=False,
                              progress=lambda _: None, counts=CountPrivacy(epsilon=1.0, max_items=4))  # fmt: skip
    return path, url


def test_dp_bundle_ships_only_private_models_and_the_composed_total(dp_bundle: tuple[Path, str]) -> None:
    m = read_manifest(dp_bundle[0])
    assert set(m["models"]) == {"popularity", "sasrec"} and m["default_recommender"] == "sasrec"  # no item-kNN
    privacy = m["privacy"]
    sgd, counts, total = privacy["sasrec"], privacy["popularity"], privacy["total"]
    assert counts["delta"] == sgd["delta"] == 1e-3 and counts["max_items_per_user"] == 4
    assert 0.98 < counts["epsilon"] <= 1.0 and counts["unit"] == "user"
    acc = RDPAccountant()
    # SASRec's part is its private head's two releases, then DP-SGD's steps (its own history)
    acc.history = [*(tuple(h) for h in sgd["history"]), (counts["noise_multiplier"], 1.0, 1)]
    assert sgd["history"][-1] == [sgd["noise_multiplier"], sgd["sample_rate"], sgd["steps"]]
    assert total["epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-3), abs=1e-4)
    assert max(sgd["epsilon"], counts["epsilon"]) < total["epsilon"] <= sgd["epsilon"] + counts["epsilon"]
    assert total["parts"] == ["popularity", "sasrec"]
    evaluation = json.loads((dp_bundle[0] / "evaluation.json").read_text())
    assert "itemknn" not in evaluation["models"] and "not chosen on validation" in evaluation["default_recommender"]


def test_write_bundle_refuses_a_public_model_beside_a_private_default(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    torch.set_num_threads(1)
    data = SequenceData.from_events(shop[1], shop[0])
    cat = catalogue_in_index_order(shop[0], data.item_ids)
    mlp = MLPRecommender(epochs=1, batch_size=16, **DP).use_trainer(LoopTrainer(progress=False)).fit(data)
    with pytest.raises(ValueError, match=r"\['itemknn'\] were not"):
        write_bundle(tmp_path, "shop", cat, {"mlp": mlp, "itemknn": ItemKNN().fit(data)}, "mlp")
    assert not list(tmp_path.iterdir())  # nothing half-written
    pop, record = private_popularity(data, 1.0, 1e-3)
    path = write_bundle(tmp_path, "shop", cat, {"mlp": mlp, "popularity": pop}, "mlp",
                        {"models": {"popularity": {"privacy": record}}})  # fmt: skip
    assert read_manifest(path)["privacy"]["total"]["parts"] == ["mlp", "popularity"]


def _settings(tmp: Path, bundle: Path, url: str, **kw: object) -> ServeSettings:
    return ServeSettings(bundle=str(bundle), bundles_dir=str(bundle.parent), store=url, api_key=API_KEY,
                         event_log=str(tmp / "events.jsonl"), flush_interval_s=0.0, demo=True, **kw)  # type: ignore[arg-type]  # fmt: skip


def _burst(c: TestClient, item: str, tag: str, n: int = 40) -> None:
    """One new user views one item n times (n distinct events)."""
    ev = [{"event_id": f"{tag}-{j}", "user_id": f"burster-{tag}", "item_id": item, "event_type": "view"} for j in range(n)]
    assert c.post("/v1/events", json={"events": ev}, headers=H).json()["accepted"] == n


def test_dp_server_trending_is_the_release_and_ignores_a_burst(tmp_path: Path, dp_bundle: tuple[Path, str]) -> None:
    bundle, url = dp_bundle
    with TestClient(create_app(_settings(tmp_path, bundle, url))) as c:
        before = [r["item_id"] for r in c.get("/v1/trending", params={"k": 10}).json()["items"]]
        svc = c.app.state.service  # type: ignore[attr-defined]
        release = svc.bundle.models["popularity"].score([np.zeros(0, np.int64)])[0]
        assert np.array_equal(svc.bundle.trending, release)
        tail = before[-1]
        _burst(c, tail, "dp")
        assert [r["item_id"] for r in c.get("/v1/trending", params={"k": 10}).json()["items"]] == before
        cold = c.get("/v1/recommend/someone-new", params={"k": 10}).json()
        assert cold["model"] == "trending" and [r["item_id"] for r in cold["items"]] == before
        info = c.get("/v1/admin/bundle").json()
        assert set(info["privacy"]) == {"popularity", "sasrec", "total"} and info["privacy"]["total"]["unit"] == "user"
    # control: the same bundle with live trending counts is moved by the burst (the check above can fail)
    live = _settings(tmp_path / "live", bundle, url, trending_source="live")
    with TestClient(create_app(dataclasses.replace(live))) as c:
        low = [r["item_id"] for r in c.get("/v1/trending", params={"k": 40}).json()["items"]][-1]
        _burst(c, low, "live", n=80)  # the store also holds the 40 events of the first burst
        assert c.get("/v1/trending", params={"k": 1}).json()["items"][0]["item_id"] == low


def test_trending_source_is_a_checked_setting() -> None:
    from soutui.config import ConfigError, from_dict

    assert from_dict(ServeSettings, {"trending_source": "bundle"}, "serve").trending_source == "bundle"
    with pytest.raises(ConfigError):
        from_dict(ServeSettings, {"trending_source": "noisy"}, "serve")


def test_retrain_publish_of_a_dp_model_is_a_private_bundle(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """`soutui retrain` publishes through retrain_bundle.publish: a DP candidate gets the same private
    bundle as `bundle build` gives it (no item-kNN, popularity released privately, the total composed)."""
    from soutui.serving.retrain_bundle import publish

    torch.set_num_threads(1)
    data = SequenceData.from_events(shop[1], shop[0])
    model = sasrec(**SMALL, **DP, epochs=1).fit(data)
    decision = {"protocol": "test", "candidate": {}, "serving": {}}
    path = publish(tmp_path / "bundles", "shop", shop[0], data, "sasrec", model, decision, with_search=False)
    m = read_manifest(path)
    assert set(m["models"]) == {"popularity", "sasrec"} and m["default_recommender"] == "sasrec"
    privacy = m["privacy"]
    assert privacy["sasrec"]["epsilon"] <= DP["dp_epsilon"] + 1e-6 and privacy["popularity"]["unit"] == "user"
    assert privacy["total"]["parts"] == ["popularity", "sasrec"]
    assert privacy["total"]["epsilon"] > privacy["sasrec"]["epsilon"]
