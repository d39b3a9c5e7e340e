"""The one rerank path behind every rerank route (corral/Cohere v1, Cohere v2, TEI,
Infinity): limits, the router with its fallbacks, the order and top_n."""

from __future__ import annotations

from dataclasses import dataclass

from corral.config import Task
from corral.input_limits import check_texts
from corral.observe import current_trace
from corral.observe.cost import llm_equivalent
from corral.routing import Router
from corral.runtime import ExpertHandle
from corral.tasks.text._sentence import Truncate
from corral.tasks.text.rerank import RerankInput

__all__ = ["Ranked", "rank_documents"]


@dataclass(frozen=True)
class Ranked:
    handle: ExpertHandle  # the expert that answered (a fallback, maybe)
    order: list[int]  # document indices, most relevant first, top_n of them
    scores: list[float]  # per document, in input order: [0, 1], or raw with raw_scores
    tokens: int


async def rank_documents(
    router: Router,
    model: str | None,
    query: str,
    documents: list[str],
    *,
    top_n: int | None = None,
    raw_scores: bool = False,
    max_tokens_per_doc: int | None = None,
    truncate: Truncate = "end",
) -> Ranked:
    limits = router.runtime.config.server.limits
    check_texts([query], limits, param="query")
    check_texts(documents, limits, param="documents")
    if not documents:
        return Ranked(router.pick(Task.RERANK, model), [], [], 0)
    request = RerankInput(
        query=query, documents=documents, max_tokens_per_doc=max_tokens_per_doc, truncate=truncate
    )
    current_trace().llm_tokens = llm_equivalent(Task.RERANK, documents, [query])
    handle, scored = await router.serve(Task.RERANK, model, request)
    values = scored.raw if raw_scores else scored.scores
    order = sorted(range(len(documents)), key=lambda i: -values[i])[:top_n]
    return Ranked(handle, order, list(values), scored.tokens)
