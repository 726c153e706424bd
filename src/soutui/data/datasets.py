"""Loading a public dataset by name: read it from the store, importing it on first use.

`load_dataset(name)` returns (items, events) so every later stage can start from one
call. It sits above the importers; the registry and the data-dir lookup live in
`soutui.data.sources` and are re-exported here for callers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from soutui.config import NotFoundError
from soutui.data.importers import import_dataset
from soutui.data.sources import (
    DATASETS,
    DatasetInfo,
    RemoteFile,
    _has_dataset,
    cache_dir,
    candidate_dirs,
    find_data_dir,
    info,
)
from soutui.data.store import StoreError, StoreLockedError, open_store

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "RemoteFile",
    "_has_dataset",
    "cache_dir",
    "candidate_dirs",
    "find_data_dir",
    "info",
    "load_dataset",
]


def _store_name(name: str) -> str:
    return name.replace("-", "_")


def load_dataset(
    name: str, store_url: str | None = None, data_dir: str | Path | None = None, progress: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(items, events) of dataset `name`, importing it into the store on first use.

    The store is opened read-only unless the dataset must be imported, so commands that only
    read (evaluate, train, bundle build) run side by side; only the first-use import writes."""
    found = _read(name, store_url)
    if found is not None:
        return found
    if name not in DATASETS:
        raise NotFoundError(
            f"dataset {name!r} is not in the store and is not a built-in dataset ({', '.join(sorted(DATASETS))}); "
            f"import your files first: soutui data import generic --name {name} --events FILE"
        )
    if progress:
        print(f"soutui: importing {name} into the store (first use) ...", file=sys.stderr)
    report = import_dataset(name, data_dir=data_dir, store_url=store_url)
    if progress:
        print(
            f"soutui: imported {name}: {report.rows_kept} kept, {sum(report.quarantined.values())} quarantined "
            f"in {report.seconds:.1f}s",
            file=sys.stderr,
        )
    store = open_store(store_url)
    try:
        return store.read(name, "items"), store.read(name, "events")
    finally:
        store.close()


def _read(name: str, store_url: str | None) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(items, events) from a read-only store, or None when there is no store or no such dataset."""
    try:
        store = open_store(store_url, read_only=True)
    except StoreLockedError:
        raise  # a writer holds it: the one-line error says which process
    except StoreError:
        return None  # no store file yet: the import creates it
    try:
        if _store_name(name) not in {_store_name(d) for d in store.datasets()}:
            return None
        return store.read(name, "items"), store.read(name, "events")
    finally:
        store.close()
