"""One experiment log appended by several server workers at once (issue 13 §2): every record
lands as one whole line, records longer than PIPE_BUF included, and a torn line left by a
worker killed mid-write swallows no later record."""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
from pathlib import Path

from soutui.serving.experiments import ExperimentLog, Ledger

WRITERS, RECORDS = 4, 2000
SIZES = (16, 300, 1500, 4097, 6000, 9000)  # bytes of padding; half the records are over PIPE_BUF (4 KiB)


def _record(w: int, i: int, rng: random.Random) -> dict[str, object]:
    size = rng.choice(SIZES)
    return {"t": "test", "w": w, "i": i, "n": size, "pad": "点" * (size // 3) + "x" * (size % 3)}


def _append(path: str, w: int) -> None:
    """One worker: 2,000 records, as single writes and as batches of 4 (like claims)."""
    rng = random.Random(w)
    log = ExperimentLog(Path(path))
    i = 0
    while i < RECORDS:
        n = 1 if rng.random() < 0.5 else min(4, RECORDS - i)
        log.write([_record(w, i + j, rng) for j in range(n)], sync=rng.random() < 0.05)
        i += n
    log.close()


def _valid(line: bytes) -> dict[str, object] | None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    return rec if isinstance(rec, dict) else None


def test_four_processes_append_8000_records_of_varied_sizes_as_8000_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "experiments.jsonl"
    path.write_bytes(b'{"t":"imp","impression_id":"torn","pad":"')  # a worker killed mid-write
    ctx = multiprocessing.get_context("fork")  # the children need only ExperimentLog
    procs = [ctx.Process(target=_append, args=(str(path), w)) for w in range(WRITERS)]
    torn_seen: list[bytes] = []
    stop = threading.Event()

    def read_while_writing() -> None:  # a reader (the Ledger's rule: complete lines only) never sees a broken record
        offset = 0
        while not stop.is_set() or offset < path.stat().st_size:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
            end = data.rfind(b"\n") + 1
            torn_seen.extend(line for line in data[:end].splitlines() if _valid(line) is None)
            offset += end
            if stop.is_set() and not end:
                break

    reader = threading.Thread(target=read_while_writing)
    reader.start()
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    stop.set()
    reader.join(timeout=60)

    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # the file ends on a whole line
    records = [r for r in map(_valid, lines[:-1]) if r is not None]
    assert len(records) == WRITERS * RECORDS  # exactly 8,000 valid lines ...
    assert len(lines) - 1 == WRITERS * RECORDS + 1  # ... plus the torn one, still on its own line
    assert torn_seen == [lines[0]]  # the reader saw no other broken line while the writers ran
    assert sorted((r["w"], r["i"]) for r in records) == [(w, i) for w in range(WRITERS) for i in range(RECORDS)]
    assert all(len(str(r["pad"]).encode()) == r["n"] for r in records)  # no record cut or glued
    assert sum(1 for r in records if int(str(r["n"])) > 4096) > WRITERS * RECORDS // 3
    ledger = Ledger()  # the server's reader skips the torn line and reads on
    ledger.follow(path)
    assert ledger._offset == path.stat().st_size
