"""Reading the user's own files tolerantly: one bad line is quarantined with its number, not the file.

CSV/TSV are parsed line by line with the csv module (a quoted field may span lines), so an
unbalanced quote, a wrong field count or a field over the csv field limit costs that line
only. JSON Lines are parsed one line at a time. Parquet columns of the wrong type are
coerced to text, with counts. Text is decoded as UTF-8 by default, a byte-order mark
(what Excel writes) included; any other encoding is named with `--encoding`.

Every frame comes back with `_row`: the line number in the file for text formats (the
header is line 1), the 1-based record number for Parquet. `iter_table` reads the same formats
a chunk of rows at a time (Parquet by row batches, text by lines), so a file larger than
memory can be imported; its chunks, put together, are exactly what `read_table` returns.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from soutui.data.importers.base import DataError, require_file

FIELD_LIMIT = csv.field_size_limit()  # 131,072 characters: longer fields are refused per line
MAX_SPAN = 50  # a quoted field may span at most this many lines before it counts as unbalanced
DELIMITERS = ",;\t|"
WHOLE = 1 << 40  # chunk_rows of a whole-file read


@dataclass
class ReadResult:
    """The rows read (all text, `_row` attached), the lines refused and the values coerced."""

    frame: pd.DataFrame
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    coerced: Counter[str] = field(default_factory=Counter)


def read_table(path: Path, what: str, encoding: str = "utf-8") -> ReadResult:
    """Read CSV/TSV/JSONL/Parquet by suffix, whole; refuse empty files with a sentence, not a traceback."""
    parts = list(iter_table(path, what, encoding, chunk_rows=WHOLE))
    if len(parts) == 1:
        return parts[0]
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    frame = frame.astype(object).where(frame.notna(), None).assign(_row=frame["_row"].astype(np.int64))
    coerced: Counter[str] = sum((p.coerced for p in parts), Counter())
    return ReadResult(frame, [b for p in parts for b in p.bad_lines], coerced)


def _codec(encoding: str) -> str:
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _decode(path: Path, what: str, encoding: str) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    codec = _codec(encoding)
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


def iter_table(path: Path, what: str, encoding: str = "utf-8", chunk_rows: int = 500_000) -> Iterator[ReadResult]:
    """`read_table` a chunk of about `chunk_rows` rows at a time (the same rows, numbers and refusals).

    Memory is bounded by the chunk, not the file. The errors are read_table's; a file with a
    header but no rows is refused after its (empty) end is reached.
    """
    require_file(path, what)
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    chunk_rows = max(1, int(chunk_rows))
    if suffix in (".parquet", ".pq"):
        chunks = _iter_parquet(path, what, chunk_rows)
    elif suffix.startswith((".csv", ".txt", ".tsv", ".jsonl", ".ndjson", ".json")):
        if suffix.startswith((".jsonl", ".ndjson", ".json")):
            chunks = _iter_jsonl(path, what, encoding, chunk_rows)
        else:
            chunks = _iter_csv(path, what, encoding, "\t" if suffix.startswith(".tsv") else None, chunk_rows)
    else:
        raise DataError(f"{what}: {path} has an unknown format; use .csv, .tsv, .jsonl or .parquet")
    seen, columns = False, []
    for chunk in chunks:
        columns = [str(c) for c in chunk.frame.columns if c != "_row"]
        if len(chunk.frame) or chunk.bad_lines:
            seen = True
            yield chunk
    if not seen:
        raise DataError(f"{what}: {path} has a header ({', '.join(columns)}) but no data rows; nothing to import")


def _lines(path: Path, what: str, encoding: str) -> Iterator[str]:
    """The file's lines, decoded as it is read (line ends kept; a bad byte raises _decode's error)."""
    try:
        codecs.lookup(_codec(encoding))
    except LookupError:
        _decode(path, what, encoding)  # raises the clear error
        raise
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    try:
        with io.TextIOWrapper(raw, encoding=_codec(encoding), newline="") as text:
            yield from text
    except UnicodeDecodeError:
        _decode(path, what, encoding)  # names the byte and its line
        raise


def _sniff(header: str) -> str:
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _parse(text: str, sep: str) -> list[list[str]]:
    if '"' not in text:  # the common case, without the csv machinery
        return [text.rstrip("\r\n").split(sep)]
    return list(csv.reader(io.StringIO(text), delimiter=sep, strict=True))


def _iter_csv(path: Path, what: str, encoding: str, sep: str | None, chunk_rows: int) -> Iterator[ReadResult]:
    """_read_csv over a window of lines: records start in the first `chunk_rows` lines of the window,
    and may run MAX_SPAN lines past it; what is left over starts the next window."""
    lines = _lines(path, what, encoding)
    first = next(lines, None)
    head = [first] if first is not None else []
    while head and not head[0].strip():  # only an all-blank file is empty; a blank header line is read as one
        nxt = next(lines, None)
        if nxt is None:
            break
        head.append(nxt)
        if nxt.strip():
            break
    if first is None or not any(h.strip() for h in head):
        raise DataError(f"{what}: {path} is empty (no header line, no rows); nothing to import")
    sep = sep or _sniff(first)
    header = _csv_header(first, sep, path, what)
    buf, base, eof = head[1:], 1, False  # buf[0] is line base + 1 of the file (1-based)
    while True:
        while not eof and len(buf) < chunk_rows + MAX_SPAN + 1:
            line = next(lines, None)
            if line is None:
                eof = True
            else:
                buf.append(line)
        limit = len(buf) if eof else chunk_rows
        frame, bad, used = _csv_records(buf, limit, sep, header, base)
        yield ReadResult(frame, bad)
        buf, base = buf[used:], base + used
        if eof and not buf:
            return


def _csv_header(line: str, sep: str, path: Path, what: str) -> list[str]:
    try:
        header = [h.strip().lstrip("\ufeff") for h in _parse(line, sep)[0]]
    except (csv.Error, IndexError) as exc:
        raise DataError(f"{what}: {path}: cannot read the header line: {exc}") from exc
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataError(f"{what}: {path}: the header names column(s) {repeated} more than once; rename them")
    return header


def _csv_records(
    lines: list[str], limit: int, sep: str, header: list[str], base: int
) -> tuple[pd.DataFrame, list[tuple[int, str]], int]:
    """The records starting in lines[:limit] (lines[0] is line base + 1): frame, bad lines, lines used."""
    rows: list[list[str]] = []
    numbers: list[int] = []
    bad: list[tuple[int, str]] = []
    i = 0
    while i < limit:
        if not lines[i].strip():
            i += 1
            continue
        rec, end, problem = _record(lines, i, sep, len(header))
        if problem:
            bad.append((base + i + 1, problem))
            i += 1  # the lines a broken record swallowed are read again on their own
            continue
        rows.append(rec)
        numbers.append(base + i + 1)
        i = end + 1
    frame = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header)
    frame = frame.replace({"": None})
    return frame.assign(_row=np.asarray(numbers, dtype=np.int64)), bad, i


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


def _iter_jsonl(path: Path, what: str, encoding: str, chunk_rows: int) -> Iterator[ReadResult]:
    """_read_jsonl a chunk of lines at a time (lines split as str.splitlines splits the whole text)."""
    n, block, numbers, blank_only = 0, [], [], True
    for raw in _lines(path, what, encoding):
        for line in raw.splitlines():
            n += 1
            blank_only = blank_only and not line.strip()
            block.append(line)
            numbers.append(n)
        if len(block) >= chunk_rows:
            yield _jsonl_block(block, numbers)
            block, numbers = [], []
    if blank_only:
        raise DataError(f"{what}: {path} is empty (no header line, no rows); nothing to import")
    yield _jsonl_block(block, numbers)


def _jsonl_block(lines: list[str], line_numbers: list[int]) -> ReadResult:
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    bad: list[tuple[int, str]] = []
    for n, line in zip(line_numbers, lines, strict=True):
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


def _iter_parquet(path: Path, what: str, chunk_rows: int) -> Iterator[ReadResult]:
    """_read_parquet a row batch at a time (the pandas index columns left out, as read_parquet does)."""
    try:
        pf = pq.ParquetFile(path)
        index = {c for c in (pf.schema_arrow.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
        start = 1
        for batch in pf.iter_batches(batch_size=chunk_rows):
            df = batch.to_pandas()
            yield _parquet_text(df.drop(columns=[c for c in df.columns if c in index]), start)
            start += len(df)
        if start == 1:
            yield _parquet_text(pf.schema_arrow.empty_table().to_pandas(), 1)
    except (ValueError, OSError) as exc:
        raise DataError(
            f"{what}: cannot read {path}: {str(exc).splitlines()[0] if str(exc) else exc}"
        ) from exc


def _parquet_text(df: pd.DataFrame, start: int) -> ReadResult:
    coerced: Counter[str] = Counter()
    out = pd.DataFrame(index=df.index)
    for c in df.columns:
        out[str(c)], n = _as_text(df[c])
        if n:
            coerced[f"parquet_{df[c].dtype}_{c}"] += n
    return ReadResult(out.assign(_row=np.arange(start, start + len(df), dtype=np.int64)), [], coerced)


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
