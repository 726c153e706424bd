"""Event ingestion: POST /v1/events (durable before the 2xx; idempotent by event_id)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from soutui.serving import schemas as S
from soutui.serving.deps import WRITE_ERRORS, MetricsDep, Service, Writer
from soutui.serving.routes.experiments import ExperimentsDep

router = APIRouter(tags=["events"])


@router.post("/v1/events", response_model=S.EventAck, dependencies=[Writer], responses=WRITE_ERRORS)
def events(svc: Service, exps: ExperimentsDep, metrics: MetricsDep, batch: S.EventBatch) -> dict[str, Any]:
    """Record a batch of events; 2xx means they are on disk. Retrying a batch is safe (event_id).
    Events naming an `impression_id` are credited to the experiment arm that showed the item."""
    records = [e.model_dump() for e in batch.events]
    accepted, dup = svc.ingest([{k: v for k, v in r.items() if k != "impression_id"} for r in records])
    exps.claim(records)  # fsync'd before the 2xx, like the events
    metrics.events.inc(accepted)
    return {"accepted": accepted, "duplicates": dup}
