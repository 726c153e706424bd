"""Session fixtures: one small search index (both encoders) built once; a shared ONNX cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from soutui.search.engine import SearchConfig, SearchEngine

from .catalog_fixture import items_frame

# the exported ONNX graph is reused across test sessions (export takes ~15 s)
os.environ.setdefault("SOUTUI_CACHE", str(Path(tempfile.gettempdir()) / "soutui-test-cache"))


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("search") / "index"
    cfg = SearchConfig(encoders=["minilm", "use"], embed_cache_dir=str(out.parent / "emb"))
    popularity = np.arange(len(items_frame()), dtype=np.float64)
    SearchEngine.build(items_frame(), out, cfg, popularity=popularity)
    return out


@pytest.fixture(scope="session")
def engine(engine_dir: Path) -> SearchEngine:
    return SearchEngine.load(engine_dir)
