"""corral's task endpoints: ``/v1/rerank`` (Cohere/TEI shape), ``/v1/classify``, ``/v1/ner``,
``/v1/forecast``."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Response

from corral.config import Task
from corral.observe import current_trace
from corral.observe.cost import llm_equivalent
from corral.server.deps import RouterDep
from corral.server.schemas import ERROR_RESPONSES, Usage
from corral.tasks.text.classify import CLASSIFY, ClassifyInput
from corral.tasks.text.ner import NerInput
from corral.tasks.text.ranking import rank_documents
from corral.tasks.text.schemas import (
    ClassifyData,
    ClassifyRequest,
    ClassifyResponse,
    EntityOut,
    LabelScore,
    NerData,
    NerRequest,
    NerResponse,
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
)

api = APIRouter(prefix="/v1", tags=["tasks"], responses=ERROR_RESPONSES)


@api.post("/rerank", response_model=RerankResponse, response_model_exclude_none=True)
async def rerank(body: RerankRequest, router: RouterDep, response: Response) -> RerankResponse:
    """Rerank documents by relevance to the query (Cohere's shape; TEI's field names too)."""
    return await rerank_response(body, router, response, api_version="1")


async def rerank_response(
    body: RerankRequest, router: RouterDep, response: Response, api_version: str
) -> RerankResponse:
    """Cohere's rerank answer (v1 and v2 differ only in ``meta``; Infinity reads it too)."""
    documents = body.document_texts
    ranked = await rank_documents(
        router,
        body.model,
        body.query,
        documents,
        top_n=body.top_n,
        raw_scores=body.raw_scores,
        max_tokens_per_doc=body.max_tokens_per_doc,
        truncate=body.truncation,
    )
    response.headers.update(body.ignored_header())
    with_docs = body.return_documents or body.return_text
    return RerankResponse(
        id=uuid.uuid4().hex,
        model=ranked.handle.name,
        results=[
            RerankResult(
                index=i,
                relevance_score=ranked.scores[i],
                document=RerankDocument(text=documents[i]) if with_docs else None,
            )
            for i in ranked.order
        ],
        usage=Usage(prompt_tokens=ranked.tokens, total_tokens=ranked.tokens),
        meta={
            "api_version": {"version": api_version},
            "billed_units": {"search_units": 1, "input_tokens": ranked.tokens},
        },
    )


@api.post("/classify", response_model=ClassifyResponse)
async def classify(body: ClassifyRequest, router: RouterDep) -> ClassifyResponse:
    request = ClassifyInput(
        texts=body.texts,
        labels=body.labels,
        multi_label=body.multi_label,
        hypothesis_template=body.hypothesis_template,
    )
    # before any plan: a cascade or an LLM classifying runs on paths of its own
    CLASSIFY.check(request, router.runtime.config.server.limits)
    current_trace().llm_tokens = llm_equivalent(Task.CLASSIFY, body.texts, body.labels or [])
    started = time.perf_counter()
    answers = await router.classify(body.model, request)
    if router.shadow is not None:  # off the response path: returns at once
        router.shadow.maybe_run(body.model, request, answers, time.perf_counter() - started)
    tokens = sum(a.classification.tokens for a in answers)
    return ClassifyResponse(
        model=body.model or answers[0].expert,
        data=[
            ClassifyData(
                index=i,
                label=a.classification.labels[0],
                score=a.classification.scores[0],
                labels=[
                    LabelScore(label=lb, score=s)
                    for lb, s in zip(a.classification.labels, a.classification.scores, strict=True)
                ],
                expert=a.expert,
                confidence=a.confidence,
            )
            for i, a in enumerate(answers)
        ],
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )


@api.post("/ner", response_model=NerResponse)
async def ner(body: NerRequest, router: RouterDep) -> NerResponse:
    request = NerInput(texts=body.texts)
    current_trace().llm_tokens = llm_equivalent(Task.NER, body.texts)
    handle, results = await router.serve(Task.NER, body.model, request)
    tokens = sum(r.tokens for r in results)
    return NerResponse(
        model=handle.name,
        data=[
            NerData(
                index=i,
                entities=[
                    EntityOut(type=e.type, text=e.text, start=e.start, end=e.end, score=e.score)
                    for e in r.entities
                ],
            )
            for i, r in enumerate(results)
        ],
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )
