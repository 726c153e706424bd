"""A chunked import's events and quarantine, spilled to a scratch DuckDB file until they are written.

The generic importer reads, pseudonymises and cleans a file a chunk at a time; every check
that needs one row is done per chunk (`cleaning.clean_events(row_checks_only=True)`), and the
rows that pass are appended here with their quarantine record (`_data`, the privacy-applied
source row). The checks that need every row — duplicate rows, duplicate event ids, unknown
items, abnormal actors (`cleaning.LATE_REASONS`) — then run here in SQL with the same rules
and the same first-occurrence order as the in-memory `clean_events`, and the kept events and
the quarantine are read back a chunk at a time in input order. DuckDB spills to disk past its
memory limit, so the import's memory is bounded by a chunk, not by the file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from soutui.data.cleaning import BOT_MEDIAN_FACTOR, BOT_MIN_EVENTS, LATE_REASONS, ROW_REASONS, row_json

# The quarantine's order: the order in which the in-memory importer adds its parts.
STAGES = {"bad_line": 0, "nested_value": 1, "malformed_ts": 2, "missing_ts": 3}
ITEMS_STAGE = 4
STAGES |= {r: 5 + i for i, r in enumerate(ROW_REASONS)}
STAGES |= {r: 5 + len(ROW_REASONS) + i for i, r in enumerate(LATE_REASONS)}
MEMORY_LIMIT = "256MB"  # DuckDB's own limit; past it, sorts and joins spill to the scratch directory
_PANDAS = {pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype(), pa.string_view(): pd.StringDtype(),
           pa.int64(): pd.Int64Dtype()}  # fmt: skip


PREFIX, OWNER = "soutui-import-", "owner.pid"


def remove_orphans(tmp: Path) -> list[Path]:
    """Delete the scratch directories of imports whose process is gone (killed: `close` never ran).

    Each directory names its process in `owner.pid`; one without it, or whose process still runs,
    is left alone. Returns what was removed."""
    gone = []
    for d in tmp.glob(PREFIX + "*"):
        try:
            pid = int((d / OWNER).read_text())
        except (OSError, ValueError):
            continue  # not ours to judge: no owner recorded (or being created)
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Staging:
    """The scratch store of one chunked import (a temporary directory, removed by `close`)."""

    def __init__(self, chunk_rows: int) -> None:
        self.chunk_rows = chunk_rows
        remove_orphans(Path(tempfile.gettempdir()))
        self._dir = tempfile.mkdtemp(prefix=PREFIX)
        (Path(self._dir) / OWNER).write_text(str(os.getpid()))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, True)
        self._con = duckdb.connect(str(Path(self._dir) / "staging.duckdb"))
        self._con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        self._con.execute("SET threads = 1")
        self._con.execute(
            'CREATE TABLE q (stage INTEGER, seq BIGINT, "table" VARCHAR, "row" VARCHAR, reason VARCHAR, data VARCHAR)'
        )
        self._con.execute("CREATE TABLE ids (label VARCHAR, v VARCHAR)")
        self._con.execute("CREATE TABLE late (_row BIGINT, reason VARCHAR)")
        self._seq = 0
        self._labels: list[str] = []
        self.columns: list[str] = []
        self.n_events = 0

    def add_events(self, ev: pd.DataFrame, source: pd.DataFrame) -> None:
        """Append the rows that passed the per-row checks; `source` (same index) is what the quarantine keeps."""
        canon = [c for c in ev.columns if not str(c).startswith("_")]
        data = pd.Series(row_json(source.loc[ev.index]), index=ev.index, dtype="string")
        frame = ev[canon].assign(_row=ev["_row"].astype("int64"), _data=data)
        self._con.register("_chunk", frame)
        if not self.columns:
            self.columns = canon
            self._con.execute("CREATE TABLE ev AS SELECT * FROM _chunk")
        else:
            types = dict(self._con.execute("SELECT column_name, column_type FROM (DESCRIBE _chunk)").fetchall())
            for c in canon:  # a column first seen in this chunk: the earlier rows hold null
                if c not in self.columns:
                    self._con.execute(f"ALTER TABLE ev ADD COLUMN {_q(c)} {types[c]}")
            self.columns = canon + [c for c in self.columns if c not in canon]  # the mapping's order
            self._con.execute("INSERT INTO ev BY NAME SELECT * FROM _chunk")
        self._con.unregister("_chunk")

    def add_quarantine(self, q: pd.DataFrame) -> None:
        """Append quarantined rows (`Quarantine.frame()`); they are read back in the in-memory order."""
        if not len(q):
            return
        stage = [ITEMS_STAGE if t == "items" else STAGES[r] for t, r in zip(q["table"], q["reason"], strict=True)]
        seq = range(self._seq, self._seq + len(q))
        self._seq += len(q)
        frame = q[["table", "row", "reason", "data"]].astype(object).assign(stage=stage, seq=seq)
        self._con.register("_chunk", frame)
        self._con.execute("INSERT INTO q BY NAME SELECT * FROM _chunk")
        self._con.unregister("_chunk")

    def add_ids(self, label: str, values: pd.Series) -> None:
        """Distinct values counted over the whole file (`distinct_ids`): pseudonymised users, sessions."""
        if label not in self._labels:
            self._labels.append(label)
        frame = pd.DataFrame({"v": values.dropna().unique().astype(object)}).assign(label=label)
        self._con.register("_chunk", frame)
        self._con.execute("INSERT INTO ids BY NAME SELECT * FROM _chunk")
        self._con.unregister("_chunk")

    def distinct_ids(self) -> dict[str, int]:
        rows = dict(self._con.execute("SELECT label, count(DISTINCT v) FROM ids GROUP BY label").fetchall())
        return {label: int(rows.get(label, 0)) for label in self._labels}

    def finish(self, catalogue: pd.Series | None, detect_bots: bool = True) -> dict[str, int]:
        """Run the checks across all rows (clean_events' LATE_REASONS, in its order); counts by reason."""
        if not self.columns:
            return {}
        cols = ", ".join(_q(c) for c in self.columns)
        alive = "(SELECT * FROM ev ANTI JOIN late USING (_row))"
        con = self._con
        con.execute(
            f"INSERT INTO late SELECT e._row, 'duplicate_row' FROM ev e "
            f"ANTI JOIN (SELECT min(_row) AS _row FROM ev GROUP BY {cols}) f USING (_row)"
        )
        if "event_id" in self.columns:
            con.execute(
                f"INSERT INTO late SELECT a._row, 'duplicate_event_id' FROM {alive} a WHERE a.event_id IS NOT NULL "
                f"AND a._row NOT IN (SELECT min(_row) FROM {alive} WHERE event_id IS NOT NULL GROUP BY event_id)"
            )
        if catalogue is not None:
            con.register("_known", pd.DataFrame({"item_id": catalogue.astype(str).unique().astype(object)}))
            con.execute(
                f"INSERT INTO late SELECT a._row, 'unknown_item' FROM {alive} a WHERE a.item_id IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM _known k WHERE k.item_id = a.item_id)"
            )
            con.unregister("_known")
        key = self._actor_key()
        if detect_bots and key:
            con.execute(
                f"INSERT INTO late WITH k AS (SELECT _row, {key} AS key FROM {alive}), "
                "c AS (SELECT key, count(*) AS n FROM k WHERE key IS NOT NULL GROUP BY key), "
                f"t AS (SELECT greatest({BOT_MIN_EVENTS}, {BOT_MEDIAN_FACTOR} * quantile_cont(n, 0.5)) AS thr FROM c) "
                "SELECT k._row, 'abnormal_user' FROM k JOIN c USING (key) CROSS JOIN t WHERE c.n > t.thr"
            )
        counts = dict(con.execute("SELECT reason, count(*) FROM late GROUP BY reason").fetchall())
        total = con.execute("SELECT count(*) FROM ev").fetchall()[0][0]
        self.n_events = int(total) - int(sum(counts.values()))
        return {r: int(counts[r]) for r in LATE_REASONS if counts.get(r)}

    def _actor_key(self) -> str:
        """clean_events' actor: the user, else 'session:' + the session (SQL), '' when there is neither."""
        user = "user_id" in self.columns
        session = "session_id" in self.columns
        if user and session:
            return "coalesce(user_id, 'session:' || session_id)"
        return "user_id" if user else "('session:' || session_id)" if session else ""

    def first_seen(self, column: str) -> pd.DataFrame:
        """The distinct non-null values of a kept events column, in order of first appearance."""
        c = _q(column)
        return self._con.sql(
            f"SELECT {c} FROM ev ANTI JOIN late USING (_row) WHERE {c} IS NOT NULL GROUP BY {c} ORDER BY min(_row)"
        ).to_arrow_table().to_pandas(types_mapper=_PANDAS.get)

    def events(self) -> Iterator[pd.DataFrame]:
        """The kept events, in input order, `chunk_rows` at a time."""
        if not self.columns:
            return
        cols = ", ".join(_q(c) for c in self.columns)
        yield from self._batches(f"SELECT {cols} FROM ev ANTI JOIN late USING (_row) ORDER BY _row")

    def quarantine(self) -> Iterator[pd.DataFrame]:
        """Every quarantined row (table, row, reason, data), in the order the in-memory importer keeps."""
        stage = "CASE reason " + " ".join(f"WHEN '{r}' THEN {STAGES[r]}" for r in LATE_REASONS) + " END"
        late = (
            f"SELECT {stage} AS stage, l._row AS seq, 'events' AS \"table\", CAST(l._row AS VARCHAR) AS \"row\", "
            "l.reason, e._data AS data FROM late l JOIN ev e USING (_row)"
            if self.columns
            else "SELECT * FROM q WHERE false"
        )
        yield from self._batches(
            f'SELECT "table", "row", reason, data FROM (SELECT * FROM q UNION ALL BY NAME {late}) ORDER BY stage, seq'
        )

    def _batches(self, sql: str) -> Iterator[pd.DataFrame]:
        reader = self._con.sql(sql).to_arrow_reader(self.chunk_rows)
        for batch in reader:
            yield batch.to_pandas(types_mapper=_PANDAS.get)

    def close(self) -> None:
        self._con.close()
        self._cleanup()
