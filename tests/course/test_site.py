"""The built course site renders offline in Chromium: a plot and an exercise on a page per language."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

COURSE = Path(__file__).resolve().parents[2] / "course"

LAB = "02_data_processing"  # the quickest lab that has both plots and exercises

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("course")
    cmd = [sys.executable, str(COURSE / "run_labs.py"), "--labs", LAB[:2],
           "--site-dir", str(out / "site"), "--build-dir", str(out / "build")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "site"


def test_pages_render_offline(site: Path, chromium: Any) -> None:
    with chromium() as browser:
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        for lang, word in (("zh", "练习"), ("en", "Exercise")):
            page.goto((site / lang / f"{LAB}.html").as_uri())
            plot = page.locator("img.plot").first
            plot.wait_for(state="visible")
            assert page.evaluate("(img) => img.naturalWidth", plot.element_handle()) > 100
            exercise = page.locator(".exercise[data-exercise='2.1']")
            assert exercise.is_visible()
            assert word in exercise.inner_text()
            assert page.locator("text=✓ 正确 / correct").count() >= 2  # the checks ran on the solutions
            page.screenshot(path=str(site / f"{lang}.png"), full_page=False)
    assert all(u.startswith(("file://", "data:")) for u in requests), [u for u in requests if "file" not in u]
