"""SASRec's parameters: the content and head settings beside the network's and the loop's configs, and
how a flat parameter dict is split into the three typed configs (unknown keys raise)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from soutui.config import ConfigError, from_dict
from soutui.models.fitting import TrainConfig
from soutui.models.sasrec import SASRecConfig

# network fields derived from the data, never set by the user
DERIVED = ("n_items", "text_dim", "n_attrs", "attrs_per_item", "dense_loss", "dp_spent")
# trained on user data outside DP-SGD, so switched off when training privately (docs/privacy.md); the
# co-occurrence head is instead a private release when `dp_head` > 0 (models.private_cooc)
DP_HEAD = "co-occurrence head"
DP_OFF = [DP_HEAD, "popularity prior of the item bias", "cold-item reset",
          "choices on validation (early stopping, head weight): the last step's weights are kept"]  # fmt: skip


@dataclass
class ContentConfig:
    use_text: bool = True  # use title embeddings when fit(content=) provides them
    use_attrs: bool = True  # use attribute ids when provided
    use_timestamps: bool = True  # feed event times (only matters when model use_time=True)
    cold_item_reset: bool = True  # items unseen in training score by content alone
    valid_users: int = 0  # cap validation users for early stopping (0 = all); seeded sample
    # head weights tried on validation (roughly geometric; 0 = the transformer alone, always tried)
    cooc_alphas: tuple[float, ...] = (
        0.0,
        0.25,
        0.5,
        1.0,
        1.5,
        2.0,
        3.0,
        4.0,
        6.0,
        8.0,
        12.0,
        16.0,
        24.0,
        32.0,
    )
    # the head's history half-lives tried on validation with every weight (the network's own
    # `cooc_half_life` is always tried, and wins ties); () = only the network's (the default: on
    # Diginetica validation preferred 0.25 but test did not move, and each half-life costs a blend
    # of every weight; docs/sasrec.md). (0.25, 0.5, 1.0, 2.0) is a sensible grid to try
    cooc_half_lives: tuple[float, ...] = ()
    # session head (soutui.models.sasrec_session): session-kNN's votes from this many most similar
    # training sessions, added with a weight chosen on validation; 0 = off (the default)
    session_neighbors: int = 0
    # DP mode (dp_epsilon set): the share of dp_epsilon the co-occurrence head spends as a private
    # release (models.private_cooc; DP-SGD gets the rest, composed under RDP), 0 = head off, and its
    # fixed weight (a choice on validation would read user data outside the accounting)
    dp_head: float = 0.75
    dp_head_weight: float = 16.0

    def __post_init__(self) -> None:
        if not 0 <= self.dp_head < 1 or self.dp_head_weight < 0:
            raise ConfigError(
                f"sasrec: dp_head is the private head's share of dp_epsilon, in [0, 1) (0 = head off), and "
                f"dp_head_weight >= 0; got {self.dp_head}, {self.dp_head_weight}"
            )


COOC_NOTE = "co-occurrence head weight chosen on VALIDATION NDCG@10 (transformer alone = weight 0)"


def head_weight_warning(found: dict[float, float], chosen: float) -> str | None:
    """A warning when the chosen head weight is the largest tried: the best may lie beyond the grid.
    (0 is always tried and no weight is negative, so choosing 0 means the head does not help.)"""
    top = max(found)
    if chosen == top and top > 0:
        return (
            f"co-occurrence head weight {chosen:g} is the largest tried (grid {sorted(found)}): "
            "a larger one may score better on validation; widen it with --set cooc_alphas=[...]"
        )
    return None


def split_params(params: dict[str, Any]) -> tuple[SASRecConfig, TrainConfig, ContentConfig]:
    """Partition a flat parameter dict into the three typed configs; unknown keys raise."""
    groups: dict[type, dict[str, Any]] = {SASRecConfig: {}, TrainConfig: {}, ContentConfig: {}}
    owner = {f.name: cls for cls in groups for f in dataclasses.fields(cls) if f.name not in DERIVED}
    unknown = sorted(set(params) - set(owner))
    if unknown:
        raise ConfigError(f"sasrec: unknown parameter(s) {unknown}; allowed: {sorted(owner)}")
    for k, v in params.items():
        groups[owner[k]][k] = v
    return (
        from_dict(SASRecConfig, groups[SASRecConfig], "sasrec"),
        from_dict(TrainConfig, groups[TrainConfig], "sasrec"),
        from_dict(ContentConfig, groups[ContentConfig], "sasrec"),
    )
