"""Request and response schemas of the /v1 API (pydantic), so OpenAPI documents every field."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Id = Field(min_length=1, max_length=128)


class EventIn(BaseModel):
    """One behaviour event; `event_id` makes a retried batch idempotent."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=128, description="client-chosen unique id (e.g. a UUID)")
    user_id: str = Field(min_length=1, max_length=128)
    item_id: str | None = Field(default=None, min_length=1, max_length=128)
    event_type: Literal["view", "click", "cart", "purchase", "search"]
    query: str | None = Field(default=None, max_length=512)
    session_id: str | None = Field(default=None, max_length=128)
    ts: int | None = Field(default=None, ge=0, le=4_102_444_800, description="unix seconds; default: now")

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


class EventAck(BaseModel):
    accepted: int = Field(description="events new to the server, durably logged before this reply")
    duplicates: int = Field(description="events whose event_id was already seen (not counted twice)")


class Item(BaseModel):
    item_id: str
    title: str
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    in_stock: bool = True


class ResultItem(Item):
    score: float
    reason: str = Field(description="why this item is shown, in words")
    pinned: bool = False


class RecommendResponse(BaseModel):
    user_id: str
    model: str = Field(description="the recommender used, or 'trending' for users without history")
    bundle: str
    history_length: int
    items: list[ResultItem]


class TrendingResponse(BaseModel):
    bundle: str
    items: list[ResultItem]


class SimilarResponse(BaseModel):
    item_id: str
    model: str
    bundle: str
    items: list[ResultItem]


class SearchResponse(BaseModel):
    query: str
    bundle: str
    items: list[ResultItem]
    facets: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok"]
    bundle: str
    uptime_s: float
    writes_enabled: bool


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle: str | None = Field(default=None, max_length=4096, description="bundle dir; default: the newest")


class ReloadResponse(BaseModel):
    bundle: str
    previous: str
    path: str


class Problem(BaseModel):
    detail: str
