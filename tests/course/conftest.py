"""The course's tools live in course/ (not an installed package): make them importable here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

COURSE = Path(__file__).resolve().parents[2] / "course"
pytest.importorskip("jupytext", reason="the course needs its extra: pip install -e '.[course]'")
pytest.importorskip("nbclient", reason="the course needs its extra: pip install -e '.[course]'")
sys.path.insert(0, str(COURSE))
