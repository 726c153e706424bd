"""Importers: one module per source layout, listed explicitly in IMPORTERS.

Each builder reads a dataset folder and returns an `ImportResult` (canonical tables,
quarantine, report); `import_dataset` finds the folder and writes the result in one
store transaction. The `generic` importer (the user's own files) lives in
`importers.generic` and has its own entry point because it takes a column mapping; so do
the benchmark-file importers `importers.recbole` (RecBole atomic .inter / .item files) and
`importers.s3rec` (S3-Rec `user item item ...` sequence files), which take file paths.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from soutui.data.cleaning import ImportReport
from soutui.data.importers import amazon_beauty, bestbuy, diginetica, homedepot, recbole, s3rec
from soutui.data.importers.base import DataError, ImportResult, write_result
from soutui.data.sources import find_data_dir, info

# source name -> builder(data_dir, dataset_name) -> ImportResult
IMPORTERS: dict[str, Callable[[Path, str], ImportResult]] = {
    "amazon-beauty": amazon_beauty.build,
    "homedepot-search": homedepot.build,
    "bestbuy-catalog": bestbuy.build,
    "diginetica-sessions": diginetica.build_sessions,
    "diginetica-views": diginetica.build_views,
}


def build_dataset(source: str, data_dir: str | Path | None = None, name: str | None = None) -> ImportResult:
    """Read source `source` into canonical tables without writing anything."""
    if source not in IMPORTERS:
        raise DataError(
            f"unknown source {source!r}; known: {sorted(IMPORTERS)} (or `generic` for your own files)"
        )
    info(source)
    root = find_data_dir(data_dir, dataset=source)
    return IMPORTERS[source](root, name or source)


def import_dataset(
    source: str, data_dir: str | Path | None = None, store_url: str | None = None, name: str | None = None
) -> ImportReport:
    """Import `source` into the store (replacing the dataset of the same name) and return the report."""
    return write_result(build_dataset(source, data_dir, name), store_url)


# importers of the user's own files, each with its own options (soutui data import <name>)
FILE_IMPORTERS = {"recbole": recbole.build, "s3rec": s3rec.build}

__all__ = ["FILE_IMPORTERS", "IMPORTERS", "DataError", "ImportResult", "build_dataset", "import_dataset"]
