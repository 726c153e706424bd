"""A lab run as the learner gets it: each check says what is wrong, and no later cell crashes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

COURSE = Path(__file__).resolve().parents[2] / "course"


@pytest.mark.parametrize("lab", ["02", "03", "07"])
def test_starting_code_is_reported_not_crashing(lab: str, tmp_path: Path) -> None:
    cmd = [sys.executable, str(COURSE / "run_labs.py"), "--labs", lab, "--as-learner", "--no-site",
           "--build-dir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = tmp_path.glob(f"{lab}_*.ipynb")
    text = "".join(o.get("text", "") for c in nbformat.read(path, 4).cells for o in c.get("outputs", []))
    assert text.count("✗") >= 2 and "✓" not in text
