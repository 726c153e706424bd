"""How fast a run learns: the validation figure it had reached after a given number of wall-clock
seconds, as a share of its final one (issue 15: "validation NDCG@10 within 95 % of its final value
after 10 minutes" of a 20-minute budget).

`history` is the training record's per-epoch rows (`training_report()["history"]`): `seconds` is the
loop's wall clock at the end of the epoch (its validations included), `valid` the validation
figure the loop read (the transformer alone: the head's weight is chosen after the loop). "Final"
is the best validation of the run, the weights that are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seeds import mean_sd

GOAL_SECONDS = 600.0  # 10 minutes
GOAL_SHARE = 0.95


def reached_by(history: Sequence[dict[str, Any]], seconds: float = GOAL_SECONDS) -> dict[str, Any] | None:
    """{"seconds", "epochs" (validated by then), "valid_at" (best by then), "valid_final", "share"};
    None when the run recorded no validation."""
    rows = [r for r in history if r.get("valid") is not None]
    if not rows:
        return None
    final = max(float(r["valid"]) for r in rows)
    early = [float(r["valid"]) for r in rows if float(r["seconds"]) <= seconds]
    at = max(early, default=0.0)
    return {
        "seconds": seconds,
        "epochs": len(early),
        "valid_at": round(at, 6),
        "valid_final": round(final, 6),
        "share": round(at / final, 4) if final > 0 else None,
    }


def mean_share(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """mean ± sd over seeds of the rows' `valid_reached` share; None unless every row has one."""
    shares = [(r.get("valid_reached") or {}).get("share") for r in rows]
    known = [float(x) for x in shares if x is not None]
    return mean_sd(known) if known and len(known) == len(shares) else None


def describe(reached: dict[str, Any] | None) -> str:
    """'validation after 10 min: 0.0636 = 97.0 % of its final 0.0656 (goal >= 95 %)'."""
    if reached is None or reached["share"] is None:
        return "validation after 10 min: not recorded"
    return (
        f"validation after {reached['seconds'] / 60:g} min ({reached['epochs']} epochs): {reached['valid_at']:.4f}"
        f" = {100 * reached['share']:.1f} % of its final {reached['valid_final']:.4f}"
        f" (goal >= {100 * GOAL_SHARE:.0f} %)"
    )
