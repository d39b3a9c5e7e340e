"""``server.limits`` on an expert's input, wherever it was built: over HTTP, by the
coordinator's tool calls, by a semantic route's extraction. Each is a 413 naming the limit,
raised before any model runs. An input model's ``check_limits`` calls these; its
``Operation`` (``experts/operation.py``) applies it on every path into an expert.
"""

from __future__ import annotations

from corral.config import LimitsConfig
from corral.errors import PayloadTooLarge

__all__ = [
    "check_fit_work",
    "check_labels",
    "check_pages",
    "check_series",
    "check_texts",
]


def check_pages(pages: list[int] | None, limits: LimitsConfig) -> None:
    if pages is not None and len(pages) > limits.max_pages:
        raise PayloadTooLarge(
            f"pages has {len(pages)} items; server.limits.max_pages is {limits.max_pages}",
            param="pages",
        )


def check_texts(
    texts: list[str], limits: LimitsConfig, param: str = "input", max_items: int | None = None
) -> None:
    """413 naming the limit when a request has too many texts or one is too long
    (``max_items``: server.limits.max_embedding_inputs instead of max_batch_items)."""
    count_limit = "max_batch_items" if max_items is None else "max_embedding_inputs"
    most = limits.max_batch_items if max_items is None else max_items
    if len(texts) > most:
        raise PayloadTooLarge(
            f"{param} has {len(texts)} items; server.limits.{count_limit} is {most}",
            param=param,
        )
    for i, text in enumerate(texts):
        if len(text) > limits.max_text_chars:
            raise PayloadTooLarge(
                f"{param}[{i}] has {len(text)} characters; server.limits.max_text_chars is "
                f"{limits.max_text_chars}",
                param=param,
            )


def check_labels(labels: list[str] | None, limits: LimitsConfig) -> None:
    if labels is not None and len(labels) > limits.max_labels:
        raise PayloadTooLarge(
            f"labels has {len(labels)} items; server.limits.max_labels is {limits.max_labels}",
            param="labels",
        )
    check_texts(labels or [], limits, param="labels")


def check_series(series: list[list[float]], horizon: int, limits: LimitsConfig) -> None:
    """413 naming the limit when a forecast has too many or too long series, or too far a
    horizon: the work grows with each, and the body limit alone does not bound the horizon."""
    if len(series) > limits.max_batch_items:
        raise PayloadTooLarge(
            f"series has {len(series)} items; server.limits.max_batch_items is "
            f"{limits.max_batch_items}",
            param="series",
        )
    for i, values in enumerate(series):
        if len(values) > limits.max_series_length:
            raise PayloadTooLarge(
                f"series[{i}] has {len(values)} values; server.limits.max_series_length is "
                f"{limits.max_series_length}",
                param=f"series[{i}]",
            )
    if horizon > limits.max_horizon:
        raise PayloadTooLarge(
            f"horizon is {horizon}; server.limits.max_horizon is {limits.max_horizon}",
            param="horizon",
        )
    points = sum(len(values) + horizon for values in series)
    if points > limits.max_forecast_points:
        raise PayloadTooLarge(
            f"this forecast asks for {points} points (series x (values + horizon)); "
            f"server.limits.max_forecast_points is {limits.max_forecast_points}: send fewer "
            "or shorter series, or a nearer horizon",
            param="series",
        )


def check_fit_work(rows: int, features: int, epochs: int | None, limits: LimitsConfig) -> None:
    """413 naming server.limits.max_fit_work when a fit's rows x features x epochs (the
    passes a fit makes; 100 when not given) is past it: the time a fit takes grows with each."""
    work = rows * features * (epochs or 100)
    if work > limits.max_fit_work:
        raise PayloadTooLarge(
            f"this fit asks for {work} row-feature-epochs ({rows} x {features} x "
            f"{epochs or 100}); server.limits.max_fit_work is {limits.max_fit_work}: send "
            "fewer rows or set options.epochs lower",
            param="options.epochs" if epochs else "data",
        )
