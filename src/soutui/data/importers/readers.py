"""Reading the user's own files tolerantly: one bad line is quarantined with its number, not the file.

CSV/TSV are parsed line by line with the csv module (a quoted field may span lines), so an
unbalanced quote, a wrong field count or a field over the csv field limit costs that line
only. JSON Lines are parsed one line at a time. Parquet columns of the wrong type are
coerced to text, with counts. Text is decoded as UTF-8 by default, a byte-order mark
(what Excel writes) included; any other encoding is named with `--encoding`.

Every frame comes back with `_row`: the line number in the file for text formats (the
header is line 1), the 1-based record number for Parquet.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soutui.data.importers.base import DataError, require_file

FIELD_LIMIT = csv.field_size_limit()  # 131,072 characters: longer fields are refused per line
MAX_SPAN = 50  # a quoted field may span at most this many lines before it counts as unbalanced
DELIMITERS = ",;\t|"


@dataclass
class ReadResult:
    """The rows read (all text, `_row` attached), the lines refused and the values coerced."""

    frame: pd.DataFrame
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    coerced: Counter[str] = field(default_factory=Counter)


def read_table(path: Path, what: str, encoding: str = "utf-8") -> ReadResult:
    """Read CSV/TSV/JSONL/Parquet by suffix; refuse empty files with a sentence, not a traceback."""
    require_file(path, what)
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        result = _read_parquet(path, what)
    elif suffix.startswith((".csv", ".txt", ".tsv", ".jsonl", ".ndjson", ".json")):
        text = _decode(path, what, encoding)
        if not text.strip():
            raise DataError(f"{what}: {path} is empty (no header line, no rows); nothing to import")
        if suffix.startswith((".jsonl", ".ndjson", ".json")):
            result = _read_jsonl(text)
        else:
            result = _read_csv(text, path, what, "\t" if suffix.startswith(".tsv") else None)
    else:
        raise DataError(f"{what}: {path} has an unknown format; use .csv, .tsv, .jsonl or .parquet")
    if result.frame.empty and not result.bad_lines:
        cols = [c for c in result.frame.columns if c != "_row"]
        raise DataError(
            f"{what}: {path} has a header ({', '.join(map(str, cols))}) but no data rows; nothing to import"
        )
    return result


def _decode(path: Path, what: str, encoding: str) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        import gzip

        raw = gzip.decompress(raw)
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return raw.decode(codec)
    except LookupError as exc:
        raise DataError(
            f"--encoding {encoding!r} is not a known text encoding (try utf-8, gbk, gb18030, latin-1)"
        ) from exc
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{what}: {path} is not {encoding} text (byte 0x{raw[exc.start]:02x} on line {line}); "
            "if it was saved as GBK/GB18030 (Chinese Excel) or another encoding, pass --encoding gbk "
            "(or the file's encoding)"
        ) from exc


def _sniff(header: str) -> str:
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _parse(text: str, sep: str) -> list[list[str]]:
    if '"' not in text:  # the common case, without the csv machinery
        return [text.rstrip("\r\n").split(sep)]
    return list(csv.reader(io.StringIO(text), delimiter=sep, strict=True))


def _read_csv(text: str, path: Path, what: str, sep: str | None) -> ReadResult:
    lines = io.StringIO(text, newline="").readlines()
    sep = sep or _sniff(lines[0])
    try:
        header = [h.strip().lstrip("\ufeff") for h in _parse(lines[0], sep)[0]]
    except (csv.Error, IndexError) as exc:
        raise DataError(f"{what}: {path}: cannot read the header line: {exc}") from exc
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataError(f"{what}: {path}: the header names column(s) {repeated} more than once; rename them")
    rows: list[list[str]] = []
    numbers: list[int] = []
    bad: list[tuple[int, str]] = []
    i = 1
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        rec, end, problem = _record(lines, i, sep, len(header))
        if problem:
            bad.append((i + 1, problem))
            i += 1  # the lines a broken record swallowed are read again on their own
            continue
        rows.append(rec)
        numbers.append(i + 1)
        i = end + 1
    frame = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header)
    frame = frame.replace({"": None})
    return ReadResult(frame.assign(_row=np.asarray(numbers, dtype=np.int64)), bad)


def _record(lines: list[str], i: int, sep: str, ncols: int) -> tuple[list[str], int, str]:
    """Parse the record starting on line i: (fields, last line used, problem or '')."""
    j, buf = i, lines[i]
    while True:
        try:
            recs = _parse(buf, sep)
            break
        except csv.Error as exc:
            if "unexpected end of data" not in str(exc):
                return [], i, "unbalanced quote" if j > i else f"unreadable line: {exc}"
            if j + 1 >= len(lines) or j - i >= MAX_SPAN:
                return [], i, "unbalanced quote"
            j += 1
            buf += lines[j]
    if len(recs) != 1 or len(recs[0]) != ncols:
        n = sum(len(r) for r in recs)
        return [], i, f"{n} fields where the header has {ncols}" if j == i else "unbalanced quote"
    if any(len(f) > FIELD_LIMIT for f in recs[0]):
        return [], i, f"a field longer than the limit of {FIELD_LIMIT:,} characters"
    return recs[0], j, ""


def _read_jsonl(text: str) -> ReadResult:
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    bad: list[tuple[int, str]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            bad.append((n, f"invalid JSON: {exc}"))
            continue
        if not isinstance(rec, dict):
            bad.append((n, f"a JSON {type(rec).__name__}, not an object"))
            continue
        records.append(rec)
        numbers.append(n)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    frame = frame.astype(object).where(frame.notna(), None) if records else frame
    return ReadResult(frame.assign(_row=np.asarray(numbers, dtype=np.int64)), bad)


def _read_parquet(path: Path, what: str) -> ReadResult:
    try:
        df = pd.read_parquet(path)
    except (ValueError, OSError) as exc:
        raise DataError(
            f"{what}: cannot read {path}: {str(exc).splitlines()[0] if str(exc) else exc}"
        ) from exc
    coerced: Counter[str] = Counter()
    out = pd.DataFrame(index=df.index)
    for c in df.columns:
        out[str(c)], n = _as_text(df[c])
        if n:
            coerced[f"parquet_{df[c].dtype}_{c}"] += n
    return ReadResult(out.assign(_row=np.arange(1, len(df) + 1, dtype=np.int64)), [], coerced)


def _as_text(s: pd.Series) -> tuple[pd.Series, int]:
    """A typed Parquet column as text (nested values stay objects, for the caller to refuse)."""
    present = int(s.notna().sum())
    if pd.api.types.is_datetime64_any_dtype(s):
        utc = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
        secs = (utc - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        return secs.astype("Int64").astype("string").astype(object).where(s.notna(), None), present
    if pd.api.types.is_bool_dtype(s):
        return s.map({True: "true", False: "false"}).astype(object).where(s.notna(), None), present
    if pd.api.types.is_float_dtype(s):
        whole = s.notna() & (s == s.round())
        text = s.astype("string").astype(object)
        text[whole] = s[whole].astype("Int64").astype("string")
        return text.where(s.notna(), None), int(whole.sum())
    if pd.api.types.is_integer_dtype(s):
        return s.astype("Int64").astype("string").astype(object).where(s.notna(), None), present
    vals = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in s.tolist()]
    vals = [v.tolist() if isinstance(v, np.ndarray) else v for v in vals]
    return pd.Series(vals, index=s.index, dtype=object).where(s.notna(), None), 0


def nested_rows(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Rows where one of `columns` holds a list or an object: refused, never turned into text."""
    bad = pd.Series(False, index=frame.index)
    for c in columns:
        if c in frame.columns and frame[c].dtype == object:
            bad |= frame[c].map(lambda v: isinstance(v, (list, dict, tuple)))
    return bad
