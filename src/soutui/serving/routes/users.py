"""The right to be forgotten: DELETE /v1/users/{user_id} (write key), by the shop's raw user id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException

from soutui.data.store import StoreError
from soutui.serving import schemas as S
from soutui.serving.deps import WRITE_ERRORS, Service, Writer
from soutui.serving.privacy import redact_paths

router = APIRouter(tags=["users"])


@router.delete("/v1/users/{user_id}", response_model=S.ForgetResponse, dependencies=[Writer],
               responses={**WRITE_ERRORS, 503: {"model": S.Problem}})
def forget_user(svc: Service, user_id: Annotated[str, S.Id]) -> dict[str, Any]:
    """Delete the user now from the store, the event log, live histories, caches and search
    personalisation; an audit row keeps a salted hash, never the id. Models of the served
    bundle keep what they learned until the next bundle is built (it is recorded as pending)."""
    try:
        return svc.forget(user_id)
    except StoreError as exc:  # e.g. the store is held by an import: nothing was deleted, retry
        raise HTTPException(503, redact_paths(f"could not delete now, nothing was deleted; retry: {exc}")) from exc
