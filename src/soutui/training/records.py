"""Experiment records: one record.json per run, data fingerprints, and a markdown report of many runs.

A record says what was trained (config), on what (a hash of the exact sequences),
how it scored (validation and test, with the protocol), how long it took and where
(cpu, torch version, threads, device), so numbers can be compared and reproduced.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soutui.data.sequences import SequenceData

RECORD_FILE = "record.json"


def data_fingerprint(data: SequenceData) -> str:
    """sha256 over the item vocabulary and every sequence (order matters), first 16 hex digits."""
    h = hashlib.sha256()
    h.update("\x00".join(map(str, data.item_ids)).encode())
    for s in data.sequences:
        h.update(np.asarray(s, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def machine_info(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_avg_1m_at_end": None if load is None else round(load, 2),
        "torch": torch.__version__,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "device": device,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def write_record(run_dir: str | Path, record: dict[str, Any]) -> Path:
    path = Path(run_dir) / RECORD_FILE
    path.write_text(json.dumps(record, indent=2, default=str))
    return path


def append_record(path: str | Path, record: dict[str, Any]) -> Path:
    """Append one record as a JSON line (a log of decisions, e.g. every `soutui retrain` gate)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
    return path


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records appended to `path` (none when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def markdown_table(
    records: Sequence[dict[str, Any]],
    metrics: Sequence[str] = ("NDCG@10", "HR@10"),
    label: str = "run",
) -> str:
    """One row per record: label, validation / test metrics (history kept and excluded), time."""
    head = [label] + [f"valid {m}" for m in metrics] + [f"test {m}" for m in metrics]
    head += [f"test {m} (excl. hist.)" for m in metrics] + ["train s", "epochs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        mt = r.get("metrics", {})
        row = [str(r.get(label) or r.get("run", "?"))]
        for part in ("valid", "test", "test_excluding_history"):
            row += [_fmt(mt.get(part, {}).get(m)) for m in metrics]
        tr = r.get("training", {})
        row += [_fmt(r.get("time", {}).get("train_s")), str(tr.get("epoch", ""))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    return (
        f"{v:.4f}" if isinstance(v, float) and abs(v) < 10 else f"{v:.0f}" if isinstance(v, float) else str(v)
    )
