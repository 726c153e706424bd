"""Online experiments' figures: GET /v1/admin/experiments (read key), and the dependency the
recommend and events routes use to reach the app's `Experiments`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from soutui.serving import schemas as S
from soutui.serving.deps import READ_ERRORS, Reader
from soutui.serving.experiments import Experiments


async def get_experiments(request: Request) -> Experiments:
    exps: Experiments = request.app.state.experiments
    return exps


ExperimentsDep = Annotated[Experiments, Depends(get_experiments)]

router = APIRouter(tags=["admin"])


@router.get("/v1/admin/experiments", response_model=S.ExperimentsReport, dependencies=[Reader], responses=READ_ERRORS)
def experiments(exps: ExperimentsDep) -> dict[str, Any]:
    """Every experiment in the experiment log: per arm impressions, CTR@k, add-to-cart and
    purchase rates; b - a with a 95 % CI and p-value (statsmodels; scipy's binomial test of
    wins for interleaving) and the winner at 5 % (null while not significant)."""
    reports = exps.reports()
    return {"experiments": reports, "unmatched_claims": exps.ledger.unmatched}
