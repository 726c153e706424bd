"""What every importer shares: the result type, file reading with clear errors, the write.

An importer turns one source layout into canonical tables + quarantine + report; it
never touches the store itself. `write_result` is the single place that writes, in
one store transaction, so a failed import leaves the previous dataset intact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from soutui.config import UserError
from soutui.data.cleaning import ImportReport, drop_private
from soutui.data.store import open_store


class DataError(UserError, ValueError):
    """Input data cannot be imported; the message says which file and what to fix."""


class StagedRows(Protocol):
    """An import's events and quarantine held outside memory, read back in chunks (`staging.Staging`)."""

    n_events: int  # kept events
    columns: list[str]  # their columns

    def events(self) -> Iterator[pd.DataFrame]: ...

    def quarantine(self) -> Iterator[pd.DataFrame]: ...

    def close(self) -> None: ...


@dataclass
class ImportResult:
    """Canonical tables, the quarantined rows and the report of one import.

    With `staged`, the events and the quarantine are there (a chunked import), not in
    `tables["events"]` and `quarantine`; `write_result` writes them chunk by chunk.
    """

    name: str
    tables: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    report: ImportReport
    meta: dict[str, str] = field(default_factory=dict)
    staged: StagedRows | None = None


def dataset_root(data_dir: Path, folder: str) -> Path:
    """`data_dir/folder` when `data_dir` holds the dataset folders, else `data_dir` itself."""
    return data_dir / folder if (data_dir / folder).is_dir() else data_dir


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(
            f"{what}: file {path} not found; pass --data-dir (or set SOUTUI_DATA_DIR) to the folder holding it"
        )
    return path


def read_delimited(path: Path, columns: Sequence[str], what: str, sep: str = ",", **kw: Any) -> pd.DataFrame:
    """Read a CSV/TSV as strings and check it has `columns` (a clear error otherwise)."""
    require_file(path, what)
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""], **kw)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{what}: cannot read {path}: {str(exc).splitlines()[0]}") from exc
    check_columns(df, columns, f"{what} ({path})")
    return df


def check_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{what}: missing column(s) {missing}; found {list(df.columns)}")


def json_column(records: list[dict[str, Any] | None]) -> list[str | None]:
    """Dicts -> compact JSON text (None stays null), for the schema's `attributes` columns."""
    return [None if r is None else json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]


def write_result(result: ImportResult, store_url: str | None = None, replace: bool = False) -> ImportReport:
    """Write an import in one transaction; the report's row counts are filled in here.

    Refused (store.ImportRefused) when it would wipe or halve the stored dataset, unless `replace`.
    """
    tables = {k: drop_private(v) for k, v in result.tables.items()}
    staged = result.staged
    for t, df in tables.items():
        result.report.rows_kept[t] = len(df)
        if t == "items" and staged is not None:
            result.report.rows_kept["events"] = staged.n_events
    meta = {
        **result.meta,
        "source": result.report.source,
        "report": json.dumps(result.report.to_dict(), ensure_ascii=False),
        "imported_at": str(int(time.time())),
    }
    try:
        store = open_store(store_url)
        try:
            if staged is None:
                store.write_dataset(
                    result.name, tables, quarantine=result.quarantine, meta=meta, replace=replace,
                    rows_read=result.report.rows_read,
                )  # fmt: skip
            else:
                store.write_dataset_chunks(
                    result.name, tables, (drop_private(c) for c in staged.events()), staged.quarantine(),
                    staged.n_events, meta=meta, replace=replace, rows_read=result.report.rows_read,
                )  # fmt: skip
        finally:
            store.close()
    finally:
        if staged is not None:
            staged.close()
    return result.report
