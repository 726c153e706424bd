"""Shared fixtures for the data tests: where the real data is, a private store per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from soutui.data.datasets import DATASETS, _has_dataset, candidate_dirs


def real_data_dir(dataset: str) -> Path | None:
    for _, path in candidate_dirs():
        if path.is_dir() and _has_dataset(path, dataset):
            return path.resolve()
    return None


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"duckdb://{tmp_path / 'store.duckdb'}"


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUTUI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SOUTUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SOUTUI_DATA_DIR", raising=False)
    monkeypatch.delenv("SOUTUI_DATA_URL", raising=False)
    monkeypatch.delenv("SOUTUI_PSEUDONYM_KEY", raising=False)


def _needs(dataset: str) -> Path:
    assert dataset in DATASETS
    root = real_data_dir(dataset)
    if root is None:
        pytest.skip(f"real data for {dataset} not found (../shared/data)")
    return root


@pytest.fixture
def needs() -> Callable[[str], Path]:
    """`needs(dataset)`: the real data dir holding `dataset`, or skip the test."""
    return _needs
