"""Fixtures for the serving tests: the synthetic shop's bundle, settings and an in-process client."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from serving_shop import API_KEY, build_shop_bundle, make_home, make_shop

from soutui.serving.settings import ServeSettings


@pytest.fixture(scope="session")
def shop() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_shop()


@pytest.fixture(scope="session")
def shop_bundle(tmp_path_factory: pytest.TempPathFactory, shop: tuple[pd.DataFrame, pd.DataFrame]) -> Path:
    return build_shop_bundle(tmp_path_factory.mktemp("bundles"), *shop)


@pytest.fixture
def settings(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], shop_bundle: Path) -> ServeSettings:
    return ServeSettings(
        bundle=str(shop_bundle),
        bundles_dir=str(shop_bundle.parent),
        store=make_home(tmp_path, shop),
        api_key=API_KEY,
        event_log=str(tmp_path / "events.jsonl"),
        flush_interval_s=0.0,
        demo=True,  # reads open, as the tests of the read endpoints assume; test_privacy_live checks the read key
    )


@pytest.fixture
def client(settings: ServeSettings):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from soutui.serving.app import create_app

    with TestClient(create_app(settings)) as c:
        yield c
