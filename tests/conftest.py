"""Fixtures shared by every test folder: the one way the browser tests start Chromium, a throwaway PostgreSQL."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from pg_server import PgServer, missing_reason, start_server

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium (playwright's own browser download is not reachable)


@contextmanager
def _chromium() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright; the test is skipped when it is not installed."""
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium fonts-wqy-microhei)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def chromium() -> Callable[[], AbstractContextManager[Any]]:
    """`with chromium() as browser:` — the launch flags every page test uses."""
    return _chromium


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the session (tests/pg_server.py); skipped only when the binaries are absent.

    With SOUTUI_REQUIRE_PG=1 a missing PostgreSQL fails instead of skipping (CI).
    """
    reason = missing_reason()
    if reason:
        if os.environ.get("SOUTUI_REQUIRE_PG") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh empty database on the session's server: `postgresql://postgres@127.0.0.1:PORT/t_xxxx`."""
    url = pg_server.create_database()
    yield url
    from soutui.data.postgres_store import close_pools

    close_pools()
    pg_server.drop_database(url.rsplit("/", 1)[1])
