"""Repeating a benchmark over seeds: parse `--seeds 0,1,2`, report mean ± sd (sample sd, ddof=1)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--seeds must be integers separated by commas, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SystemExit(f"--seeds must list distinct integers, got {text!r}")
    return seeds


def mean_sd(values: Sequence[float]) -> dict[str, float | int | list[float] | None]:
    """{"mean", "sd" (ddof=1; None for a single seed), "n", "values"}."""
    vals = [float(v) for v in values]
    return {
        "mean": statistics.fmean(vals),
        "sd": statistics.stdev(vals) if len(vals) > 1 else None,
        "n": len(vals),
        "values": vals,
    }


def fmt(stat: dict[str, float | int | list[float] | None], digits: int = 4) -> str:
    """'0.0551 ± 0.0012' ('± n/a' with one seed)."""
    mean, sd = stat["mean"], stat["sd"]
    assert isinstance(mean, float)
    return f"{mean:.{digits}f} ± " + ("n/a" if sd is None else f"{float(sd):.{digits}f}")  # type: ignore[arg-type]
