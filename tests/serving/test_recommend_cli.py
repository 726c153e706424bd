"""`soutui recommend`: the command line gives exactly the API's answer (same service, bundle and store)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from serving_shop import make_home

from soutui.cli import main
from soutui.serving.app import create_app
from soutui.serving.settings import ServeSettings


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    assert main(["recommend", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_recommend_cli_equals_the_api(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], shop_bundle: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("SOUTUI_HOME", str(tmp_path / "home"))
    url = make_home(tmp_path, shop)
    common = ["--bundle", str(shop_bundle), "--store", url]
    user = _cli(capsys, "--user", "u1", "-k", "5", *common)
    item = user["items"][0]["item_id"]
    similar = _cli(capsys, "--similar", item, "-k", "4", "--explain", *common)
    trending = _cli(capsys, "--trending", "-k", "3", *common)
    assert user["history_length"] > 0 and len(user["items"]) == 5
    assert all(it["explanation"]["attributions"] for it in similar["items"])
    settings = ServeSettings(bundle=str(shop_bundle), store=url, demo=True, flush_interval_s=0.0)
    with TestClient(create_app(settings)) as api:
        assert api.get("/v1/recommend/u1", params={"k": 5}).json()["items"] == user["items"]
        got = api.get(f"/v1/similar/{item}", params={"k": 4, "explain": "true"}).json()
        assert got["items"] == similar["items"]
        assert api.get("/v1/trending", params={"k": 3}).json()["items"] == trending["items"]


def test_recommend_cli_errors_say_what_to_fix(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], shop_bundle: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("SOUTUI_HOME", str(tmp_path / "home"))
    url = make_home(tmp_path, shop)
    assert main(["recommend", "--similar", "no-such-item", "--bundle", str(shop_bundle), "--store", url]) == 2
    assert "not in the catalogue" in capsys.readouterr().err
    assert main(["recommend", "--user", "u1", "--model", "nope", "--bundle", str(shop_bundle), "--store", url]) == 2
    assert "not in this bundle" in capsys.readouterr().err
