"""Human-readable import reports and per-dataset statistics (what `soutui data` prints)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from soutui.data.store import Store


def format_report(r: dict[str, Any]) -> str:
    """The import report as a few aligned lines."""
    lines = [f"imported {r['dataset']} from {r['source']} in {r['seconds']:.1f}s"]
    for table, n in r["rows_read"].items():
        lines.append(f"  {table:<9} read {n:>9,}")
    for table, n in r["rows_kept"].items():
        lines.append(f"  {table:<9} kept {n:>9,}")
    for title, key in (("fixed", "fixed"), ("quarantined", "quarantined"), ("privacy", "privacy")):
        if r[key]:
            lines.append(f"  {title}: " + ", ".join(f"{k} {v:,}" for k, v in r[key].items()))
    if not r["quarantined"]:
        lines.append("  quarantined: none")
    lines += [f"  note: {n}" for n in r["notes"]]
    lines += [f"  warning: {w}" for w in r.get("warnings", [])]
    return "\n".join(lines)


def dataset_stats(store: Store, name: str) -> dict[str, Any]:
    """Sizes, event types, time range and quarantine count of one stored dataset."""
    items = store.read(name, "items")
    events = store.read(name, "events")
    quarantine = store.read(name, "quarantine")
    meta = store.meta(name)
    ts = events["ts"].dropna()
    return {
        "dataset": name,
        "kind": meta.get("kind", ""),
        "items": len(items),
        "events": len(events),
        "users": int(events["user_id"].nunique()),
        "sessions": int(events["session_id"].nunique()),
        "event_types": {str(k): int(v) for k, v in events["event_type"].value_counts().items()},
        "queries": int(events["query"].nunique()),
        "first_ts": _iso(ts.min()) if len(ts) else None,
        "last_ts": _iso(ts.max()) if len(ts) else None,
        "quarantined": len(quarantine),
        "imported_at": _iso(int(meta["imported_at"])) if "imported_at" in meta else None,
    }


def _iso(ts: Any) -> str:
    return str(pd.Timestamp(int(ts), unit="s", tz="UTC").isoformat())
