"""The storefront (/) and the dashboard (/admin): static pages that call the /v1 API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parents[2] / "web" / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def storefront() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/admin")
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "admin.html")
