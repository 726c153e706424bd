"""Request and response schemas of the /v1 API (pydantic), so OpenAPI documents every field."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# at least one character that Python's str.strip() keeps (the store strips ids): pydantic's regex engine
# does not count the separators \x1c-\x1f as whitespace, Python does (the fuzz test found a 503 there)
Id = Field(min_length=1, max_length=128, pattern=r"[^\s\x1c-\x1f]")
FUTURE_SLACK_S = 86_400  # live events may be at most a day ahead of the server clock (as at import)


class Out(BaseModel):
    """Response models forbid unknown keys, so the OpenAPI schema (additionalProperties: false)
    and the fuzz test's response validation catch a field the docs do not promise."""

    model_config = ConfigDict(extra="forbid")


class EventIn(BaseModel):
    """One behaviour event; `event_id` makes a retried batch idempotent."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=128, description="client-chosen unique id (e.g. a UUID)")
    user_id: str = Field(min_length=1, max_length=128)
    item_id: str | None = Field(default=None, min_length=1, max_length=128)
    event_type: Literal["view", "click", "cart", "purchase", "search"]
    query: str | None = Field(default=None, max_length=512)
    session_id: str | None = Field(default=None, max_length=128)
    impression_id: str | None = Field(default=None, min_length=1, max_length=64, description=(
        "the `experiment.impression_id` of the list the item was chosen from: the click, cart or "
        "purchase is credited to the experiment arm that showed it"))
    ts: int | None = Field(default=None, ge=0, le=4_102_444_800, description="unix seconds; default: now; at most a day ahead")

    @field_validator("ts")
    @classmethod
    def _not_future(cls, v: int | None) -> int | None:
        """Like the importer: more than a day ahead of the server's clock is a bad clock or a forgery."""
        if v is not None and v > time.time() + FUTURE_SLACK_S:
            raise ValueError(f"ts {v} is more than a day in the future (server time {int(time.time())}); "
                             "send unix seconds, or leave ts out for now")
        return v

    @model_validator(mode="after")
    def _item_or_query(self) -> EventIn:
        if self.event_type != "search" and not self.item_id:
            raise ValueError(f"a {self.event_type!r} event needs an item_id")
        if self.event_type == "search" and not (self.query or self.item_id):
            raise ValueError("a 'search' event needs a query")
        return self


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=1000)


class EventAck(Out):
    accepted: int = Field(description="events new to the server, durably logged before this reply")
    duplicates: int = Field(description="events whose event_id was already seen (not counted twice)")


class Item(Out):
    item_id: str = Field(min_length=1)
    title: str = Field(description="'' when the catalogue has none (an item is never titled by its bare id)")
    category: str | None
    brand: str | None
    price: float | None = Field(ge=0, description="null when unknown")
    in_stock: bool


class AttributionOut(Out):
    kind: Literal["history_item", "feature", "content"]
    name: str = Field(description="the history item's title, the feature or the content part, in words")
    weight: float = Field(description="its share of the score, in the score's own units (occlusion, LIME, TreeSHAP)")


class Explanation(Out):
    method: str = Field(description="occlusion | lime | treeshap | rrf | bm25 | dense | none")
    reason: str = Field(min_length=1, description="written from the strongest attribution")
    reason_zh: str = Field(min_length=1, description="the same reason in Chinese")
    attributions: list[AttributionOut] = Field(description="strongest first (by |weight|) per kind")


class ResultItem(Item):
    score: float = Field(description="the list's own score scale; comparable within one answer only")
    reason: str = Field(min_length=1, description="why this item is shown, in words")
    pinned: bool
    explanation: Explanation | None = Field(default=None, description="only with explain=true")
    arm: Literal["a", "b"] | None = Field(default=None, description="interleaving experiments: the arm that placed this item")


class ExperimentTag(Out):
    """Present when the answer is part of an online experiment (docs/experiments.md)."""

    name: str
    kind: Literal["ab", "interleave"]
    impression_id: str = Field(description="send it with the click / cart / purchase events of these items")
    arm: Literal["a", "b"] | None = Field(description="ab: the arm shown; interleave: null (each item names its arm)")


class RecommendResponse(Out):
    user_id: str
    model: str = Field(description="the recommender used, or 'trending' for users without history")
    bundle: str
    history_length: int = Field(ge=0)
    items: list[ResultItem] = Field(max_length=100)
    experiment: ExperimentTag | None = None


class TrendingResponse(Out):
    bundle: str
    items: list[ResultItem] = Field(max_length=100)


class SimilarResponse(Out):
    item_id: str
    model: str
    bundle: str
    items: list[ResultItem] = Field(max_length=100)


class Facets(Out):
    """Counts over every matched product (not only the k shown)."""

    category: dict[str, int] = Field(description="top-level category -> count (top 20)")
    brand: dict[str, int] = Field(description="brand -> count (top 20)")
    price: dict[str, int] = Field(description="price bucket ('0-10', '100+') -> count")
    in_stock: dict[str, int] = Field(description="'true' / 'false' -> count (unknown stock not counted)")


class SearchResponse(Out):
    query: str
    bundle: str
    items: list[ResultItem] = Field(max_length=100)
    facets: Facets


class DemoUsers(Out):
    users: list[str]


class Health(Out):
    status: Literal["ok"]
    bundle: str
    uptime_s: float
    writes_enabled: bool


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle: str | None = Field(default=None, max_length=4096, description="bundle dir; default: the newest")


class ForgetResponse(Out):
    deleted: dict[str, int] = Field(description="what was deleted now, by place (store tables, event log, live history)")
    pending_rebuild: bool = Field(description="models and indexes learned from the user until the next bundle")


class ReloadResponse(Out):
    bundle: str
    previous: str


class Problem(BaseModel):
    detail: str


class BundleInfo(Out):
    """No filesystem path: none leaves the server."""

    version: str
    default_recommender: str
    manifest: dict[str, Any] = Field(description="the bundle's manifest.json")
    store: str = Field(description="where the served histories came from")
    writes_enabled: bool
    skipped: list[str] = Field(description="newer bundles not served, each with the reason (e.g. corrupt)")
    privacy: dict[str, Any] = Field(
        default_factory=dict,
        description="per model trained with DP-SGD: achieved epsilon, delta, accountant, unit (user); "
        "empty = no model was trained privately",
    )


class RouteStats(Out):
    rate_per_s: float = Field(ge=0)
    count: int = Field(ge=0)
    errors: int = Field(ge=0)
    p50_ms: float = Field(ge=0)
    p95_ms: float = Field(ge=0)
    p99_ms: float = Field(ge=0)


class CacheStats(Out):
    entries: int = Field(ge=0)
    hits: int = Field(ge=0)
    misses: int = Field(ge=0)


class Stats(Out):
    window_s: float
    routes: dict[str, RouteStats] = Field(description="per route template, over the last window_s")
    time: float
    bundle: str
    users: int = Field(ge=0, description="users with a live history")
    search_cache: CacheStats


class ExperimentsReport(Out):
    experiments: list[dict[str, Any]] = Field(description="per experiment: arms with impressions, CTR@k, cart and "
                                              "purchase rates; b - a with 95 % CI and p-value; the winner at 5 %")
    unmatched_claims: int = Field(ge=0, description="events naming an impression that is unknown or not theirs")
