"""Fixtures shared by every test folder: the one way the browser tests start Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

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
