"""Operations and the dashboard's data: /healthz, /metrics, /v1/admin/*."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from soutui.serving import explain
from soutui.serving import schemas as S
from soutui.serving.bundle import BundleError
from soutui.serving.deps import NOT_FOUND, READ_ERRORS, WRITE_ERRORS, MetricsDep, Reader, Service, Writer
from soutui.serving.privacy import redact_paths

router = APIRouter()


@router.get("/healthz", response_model=S.Health, tags=["ops"])
def healthz(svc: Service) -> dict[str, Any]:
    return {"status": "ok", "bundle": svc.bundle.version, "uptime_s": round(time.time() - svc.started, 1),
            "writes_enabled": svc.settings.writes_enabled}


@router.get("/metrics", tags=["ops"], response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
def prometheus(metrics: MetricsDep) -> Response:
    """Prometheus exposition: request counts, latency histograms, bundle version."""
    return Response(metrics.export(), media_type="text/plain; version=0.0.4")


@router.get("/v1/admin/bundle", response_model=S.BundleInfo, tags=["admin"], dependencies=[Reader], responses=READ_ERRORS)
def bundle_info(svc: Service) -> dict[str, Any]:
    """The manifest of the bundle being served (model versions, checksums, metrics); no filesystem path."""
    b = svc.bundle
    return {"version": b.version, "default_recommender": b.default, "manifest": b.manifest,
            "store": redact_paths(svc.store_status), "writes_enabled": svc.settings.writes_enabled,
            "skipped": svc.skipped_bundles, "privacy": b.manifest.get("privacy", {})}


@router.get("/v1/admin/evaluation", response_model=dict[str, Any], tags=["admin"], dependencies=[Reader], responses=READ_ERRORS)
def evaluation(svc: Service) -> dict[str, Any]:
    """The last evaluation table stored in the bundle."""
    return svc.bundle.evaluation


@router.get("/v1/admin/plots/{name}", tags=["admin"], response_class=FileResponse, dependencies=[Reader],
            responses={**NOT_FOUND, **READ_ERRORS, 200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}}}})
def plot(svc: Service, name: Annotated[str, PathParam(max_length=100)]) -> FileResponse:
    b = svc.bundle
    allowed = {Path(p).name: p for p in b.evaluation.get("plots", [])}
    if name not in allowed:
        raise HTTPException(404, f"no plot {name!r}; the bundle has {sorted(allowed)}")
    return FileResponse(b.path / allowed[name])


@router.get("/v1/admin/stats", response_model=S.Stats, tags=["admin"], dependencies=[Reader], responses=READ_ERRORS)
def stats(svc: Service, metrics: MetricsDep) -> dict[str, Any]:
    """Live request rate and latency percentiles per route (the dashboard polls this)."""
    return {**metrics.stats(), "bundle": svc.bundle.version, "users": len(svc.histories.recent),
            "search_cache": svc.search_cache.stats()}


@router.get("/v1/admin/monitoring", response_model=dict[str, Any], tags=["admin"], dependencies=[Reader], responses=READ_ERRORS)
def monitoring(svc: Service) -> dict[str, Any]:
    """Bundle age, catalogue coverage and Gini per model and arm, drift (PSI), ingest lag, the alerts
    judged against the serve config's thresholds, and recent points for the plots (docs/monitoring.md)."""
    return svc.monitor.report()


@router.get("/v1/admin/explanations", response_model=dict[str, Any], tags=["admin"], dependencies=[Reader], responses=READ_ERRORS)
def explanations(svc: Service) -> dict[str, Any]:
    """The search ranker's global feature importance and the default model's mean attribution by
    history position over up to 50 live users (serving/explain.py `overview`)."""
    b = svc.bundle
    ranker = b.search.ranker if b.search is not None else None
    return explain.overview(b.models[b.default], b.default, b.catalogue, dict(svc.histories.recent),
                            ranker.importance() if ranker is not None else None)


@router.post("/v1/admin/reload", response_model=S.ReloadResponse, dependencies=[Writer], tags=["admin"],
             responses={409: {"model": S.Problem}, **WRITE_ERRORS})
def reload(svc: Service, metrics: MetricsDep, body: S.ReloadRequest | None = None) -> dict[str, Any]:
    """Load a bundle (default: the newest) and swap it in; a bad bundle is refused, the old keeps serving."""
    try:
        out = svc.reload(body.bundle if body else None)
    except (BundleError, OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in the path
        raise HTTPException(409, redact_paths(f"bundle refused, still serving {svc.bundle.version}: {exc}")) from exc
    metrics.set_bundle(svc.bundle.version)
    return out
