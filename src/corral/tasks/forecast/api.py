"""``POST /v1/forecast``: a mean and chosen quantiles per series, or ``model: auto``'s
pick per series by backtest."""

from __future__ import annotations

from fastapi import APIRouter

from corral.config import Task
from corral.routing.auto import AUTO
from corral.runtime.cancel import deadline
from corral.server.deps import RouterDep
from corral.server.schemas import ERROR_RESPONSES
from corral.tasks.forecast.expert import FORECAST, ForecastInput
from corral.tasks.forecast.schemas import ForecastData, ForecastRequest, ForecastResponse

api = APIRouter(prefix="/v1", tags=["forecast"], responses=ERROR_RESPONSES)


@api.post("/forecast", response_model=ForecastResponse, response_model_exclude_none=True)
async def forecast(body: ForecastRequest, router: RouterDep) -> ForecastResponse:
    fields = {k: getattr(body, k) for k in ForecastInput.model_fields}
    request = ForecastInput.model_construct(**fields)  # validated as the body, its subclass
    FORECAST.check(request, router.runtime.config.server.limits)  # before auto's backtests
    if body.model == AUTO and router.runtime.config.model_named(AUTO) is None:
        with deadline(body.timeout_s):
            picks = await router.auto_rules.forecast(request)
        return ForecastResponse(
            model=AUTO,
            data=[
                ForecastData(
                    index=i,
                    mean=p.forecast.mean,
                    quantiles=p.forecast.quantiles,
                    expert=p.expert,
                    backtest_error=p.backtest_error,
                )
                for i, p in enumerate(picks)
            ],
        )
    with deadline(body.timeout_s):
        handle, results = await router.serve(Task.FORECAST, body.model, request)
    return ForecastResponse(
        model=handle.name,
        data=[
            ForecastData(index=i, mean=r.mean, quantiles=r.quantiles) for i, r in enumerate(results)
        ],
    )
