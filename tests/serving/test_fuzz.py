"""Schemathesis fuzzes every endpoint from the OpenAPI spec (in-process, bounded): no 500s."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from serving_shop import API_KEY, make_home

from soutui.serving.app import create_app
from soutui.serving.settings import ServeSettings


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, shop: tuple[pd.DataFrame, pd.DataFrame], shop_bundle: Path):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("fuzz")
    s = ServeSettings(bundle=str(shop_bundle), bundles_dir=str(tmp / "nobundles"), store=make_home(tmp, shop),
                      api_key=API_KEY, event_log=str(tmp / "e.jsonl"), flush_interval_s=0.0)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(s))


def test_no_server_errors(api_schema) -> None:  # type: ignore[no-untyped-def]
    """Every operation, 25 generated requests each (schemathesis' pytest plugin is bypassed:
    it does not run under this pytest version)."""
    failures: list[str] = []
    n_ops = 0
    for result in api_schema.get_all_operations():
        op = result.ok()
        n_ops += 1

        @given(case=op.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers={"X-API-Key": API_KEY})
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}: {response.text[:200]}")

        run()
    assert n_ops >= 10
    assert not failures, "\n".join(failures[:10])
