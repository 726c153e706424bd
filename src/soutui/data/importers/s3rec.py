"""Importer for S3-Rec / SASRec benchmark sequence files: one line per user, `user i1 i2 ...`.

This is the layout Beauty.txt (and the other S3-Rec benchmark files) ship in: ids are
whitespace-separated, the items in the user's chronological order, no timestamps. Each
item becomes a purchase event; rows are written in (file line, position) order with event
ids `<user>:<position>`, and since sequences break timestamp ties by row order, the stored
dataset gives back exactly the file's sequences. Ids are kept as they are (the benchmark's
own integers, as text), so published splits line up; benchmark files are already filtered,
so no user is dropped as a bot.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pandas as pd

from soutui.data.cleaning import ImportReport, Quarantine, clean_events, clean_items, with_row_numbers
from soutui.data.importers.base import DataError, ImportResult, require_file

EVENT_TYPE = "purchase"


def read_sequences(path: Path, encoding: str = "utf-8") -> list[tuple[str, list[str]]]:
    """(user, items) per non-empty line; a line with a user and no item is kept (and imports no event)."""
    out: list[tuple[str, list[str]]] = []
    try:
        with open(path, encoding=encoding) as fh:
            for line in fh:
                parts = line.split()
                if parts:
                    out.append((parts[0], parts[1:]))
    except UnicodeDecodeError as exc:
        raise DataError(f"s3rec: {path} is not {encoding} text ({exc.reason}); pass --encoding") from exc
    return out


def build(file: str | Path, name: str, encoding: str = "utf-8") -> ImportResult:
    """Read one S3-Rec sequence file into canonical tables (items = every id seen)."""
    started = time.perf_counter()
    path = require_file(Path(file), "s3rec")
    report = ImportReport(dataset=name, source=str(path))
    rows = read_sequences(path, encoding)
    repeated = [u for u, n in Counter(u for u, _ in rows).items() if n > 1]
    if repeated:
        raise DataError(f"s3rec: {path}: user {repeated[0]!r} has more than one line; one line per user")
    users = [u for u, items in rows for _ in items]
    positions = [p for _, items in rows for p in range(len(items))]
    items = [i for _, seq in rows for i in seq]
    if not items:
        raise DataError(f"s3rec: {path} holds no `user item item ...` lines")
    events = with_row_numbers(
        pd.DataFrame(
            {
                "event_id": [f"{u}:{p:05d}" for u, p in zip(users, positions, strict=True)],
                "user_id": pd.array(users, dtype="string"),
                "item_id": pd.array(items, dtype="string"),
                "event_type": EVENT_TYPE,
                "ts": pd.array([None] * len(items), dtype="Int64"),
            }
        )
    )
    report.rows_read["events"] = len(events)
    q = Quarantine()
    ids = sorted(set(items), key=lambda x: (0, int(x)) if x.isdigit() else (1, x))
    catalogue = clean_items(pd.DataFrame({"item_id": pd.array(ids, dtype="string")}), report, q)
    report.rows_read["items"] = len(ids)
    events = clean_events(events, report, q, catalogue=catalogue["item_id"], detect_bots=False)
    report.seconds = time.perf_counter() - started
    report.notes.append(
        f"S3-Rec sequence file: each item is a {EVENT_TYPE} event in file order, no timestamps; "
        "ids kept as they are; no bot filter (benchmark files are already filtered)"
    )
    return ImportResult(
        name=name,
        tables={
            "items": catalogue,
            "users": pd.DataFrame({"user_id": pd.unique(events["user_id"])}),
            "events": events,
        },
        quarantine=q.frame(),
        report=report,
        meta={"kind": "recommendation", "group": "user_id"},
    )
