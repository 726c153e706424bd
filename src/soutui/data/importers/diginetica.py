"""Importers for DIGINETICA (CIKM Cup 2016): SR-GNN session files and the raw view log.

`diginetica-sessions` reads `train_sessions.txt` (one anonymous session per line, item
ids in click order). The file has no clock, so timestamps are SYNTHETIC: event k of
the file (counting across sessions in file order) gets 2016-01-01T00:00Z + k seconds.
Only their order means anything; never use them for temporal splits across sessions.
`read_test_prefixes` reads the SR-GNN test file for next-click evaluation.

`diginetica-views` reads the raw log `sessionId;userId;itemId;timeframe;eventdate`;
ts = eventdate (UTC midnight) + timeframe (ms since the session started) // 1000.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from soutui.data.cleaning import ImportReport, Quarantine, clean_events, with_row_numbers
from soutui.data.importers.base import DataError, ImportResult, dataset_root, read_delimited, require_file

SESSIONS = "train_sessions.txt"
PREFIXES = "test_prefixes.tsv"
VIEWS = "sample_train-item-views.csv"
SYNTHETIC_T0 = 1_451_606_400  # 2016-01-01T00:00:00Z


def _root(data_dir: Path) -> Path:
    return dataset_root(data_dir, "diginetica-sessions")


def _numeric_order(ids: list[str]) -> list[str]:
    return sorted(ids, key=lambda x: (0, int(x), "") if x.isdigit() else (1, 0, x))


def build_sessions(data_dir: Path, name: str = "diginetica-sessions") -> ImportResult:
    started = time.perf_counter()
    root = _root(data_dir)
    report = ImportReport(dataset=name, source=str(root))
    q = Quarantine()
    path = require_file(root / SESSIONS, "diginetica-sessions")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"diginetica-sessions: {path} is not UTF-8 text ({exc})") from exc
    tokens = [ln.split() for ln in lines]
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    report.rows_read["sessions"] = len(lines)
    report.add_quarantined("empty_session", int((lengths == 0).sum()))  # nothing to keep, nothing to show
    session = np.repeat(np.arange(1, len(lines) + 1), lengths)
    pos = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.zeros(0, np.int64)
    flat = [x for t in tokens for x in t]
    sid = session.astype(str)
    events = pd.DataFrame(
        {
            "event_id": np.char.add(np.char.add(sid, ":"), pos.astype(str)),
            "session_id": sid,
            "item_id": flat,
            "event_type": "view",
            "ts": SYNTHETIC_T0 + np.arange(len(flat), dtype=np.int64),
            "_row": session,  # line number in the file
        }
    )
    report.rows_read["events"] = len(events)
    events = clean_events(events, report, q)
    items = pd.DataFrame({"item_id": _numeric_order(list(pd.unique(events["item_id"])))})
    report.seconds = time.perf_counter() - started
    report.notes.append(
        "session_id = line number; ts synthetic (file order, 1 s apart), only order is meaningful"
    )
    return ImportResult(
        name=name,
        tables={"items": items, "events": events},
        quarantine=q.frame(),
        report=report,
        meta={"kind": "sessions", "group": "session_id", "synthetic_ts": "true"},
    )


def read_test_prefixes(path: str | Path) -> tuple[list[np.ndarray], np.ndarray]:
    """SR-GNN test file (`prefix<TAB>target`): (prefixes as arrays of item-id strings, targets)."""
    df = read_delimited(Path(path), ["prefix", "target"], "diginetica test prefixes", sep="\t")
    bad = df["prefix"].isna() | df["target"].isna()
    if bad.any():
        raise DataError(
            f"{path}: {int(bad.sum())} row(s) without prefix or target (first at line {int(np.argmax(bad)) + 2})"
        )
    prefixes = [np.array(p.split(), dtype=object) for p in df["prefix"]]
    return prefixes, df["target"].str.strip().to_numpy(dtype=object)


def build_views(data_dir: Path, name: str = "diginetica-views") -> ImportResult:
    started = time.perf_counter()
    root = _root(data_dir)
    report = ImportReport(dataset=name, source=str(root))
    q = Quarantine()
    raw = read_delimited(
        root / VIEWS,
        ["session_id", "user_id", "item_id", "timeframe", "eventdate"],
        "diginetica-views",
        sep=";",
    )
    raw = with_row_numbers(raw)
    report.rows_read["events"] = len(raw)
    day = pd.to_datetime(raw["eventdate"], format="%Y-%m-%d", errors="coerce", utc=True)
    frame = pd.to_numeric(raw["timeframe"], errors="coerce")
    bad = (day.isna() | frame.isna() | (frame < 0)).to_numpy()
    report.add_quarantined("bad_timestamp", q.add("events", raw, bad, "bad_timestamp"))
    raw, day, frame = raw[~bad], day[~bad], frame[~bad]
    epoch = pd.Timestamp(0, tz="UTC")
    ts = (day - epoch) // pd.Timedelta(seconds=1) + frame.astype("int64") // 1000
    user = raw["user_id"].str.strip()
    events = pd.DataFrame(
        {
            "event_id": "v" + raw["_row"].astype(str),
            "user_id": user.where(user.str.upper() != "NA"),
            "session_id": raw["session_id"].str.strip(),
            "item_id": raw["item_id"].str.strip(),
            "event_type": "view",
            "ts": ts.astype("int64"),
            "_row": raw["_row"],
        },
        index=raw.index,
    )
    events = clean_events(events, report, q, source=raw)
    # rows in (session, time) order so sequences read chronologically
    events = events.sort_values(["session_id", "ts", "_row"], kind="stable")
    items = pd.DataFrame({"item_id": _numeric_order(list(pd.unique(events["item_id"])))})
    report.seconds = time.perf_counter() - started
    report.notes.append("ts = eventdate + timeframe ms; user 'NA' -> anonymous")
    return ImportResult(
        name=name,
        tables={"items": items, "events": events},
        quarantine=q.frame(),
        report=report,
        meta={"kind": "sessions", "group": "session_id"},
    )
