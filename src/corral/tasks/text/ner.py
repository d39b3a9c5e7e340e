"""Named-entity recognition: people, organisations, places, dates... with char offsets.

* ``spacy``: a spaCy pipeline (``nlp.pipe`` over the batch). spaCy's transition-based
  NER gives no per-entity confidence, so ``score`` is None rather than a made-up number.
* ``token-classification``: a transformers token-classification model through the
  ``token-classification`` pipeline with simple aggregation (scores included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from corral.config import LimitsConfig, Task
from corral.experts._memory import torch_bytes
from corral.experts.base import Expert, require
from corral.experts.operation import Operation
from corral.experts.options import Options, TokenClassifierOptions
from corral.input_limits import check_texts

__all__ = ["NER", "Entities", "Entity", "NerInput", "SpacyNer", "TokenClassificationNer"]


class NerInput(BaseModel):
    texts: list[str] = Field(min_length=1, description="Texts to find named entities in.")

    def check_limits(self, limits: LimitsConfig) -> None:
        """``server.limits`` on this input (413 naming the limit), as built over HTTP
        or by a tool call."""
        check_texts(self.texts, limits)


@dataclass(frozen=True)
class Entity:
    type: str
    text: str
    start: int
    end: int
    score: float | None


@dataclass(frozen=True)
class Entities:
    entities: list[Entity]
    tokens: int


NER = Operation(Task.NER, NerInput, list[Entities])


class _NerExpert(Expert[NerInput, str, Entities, list[Entities]]):
    task = Task.NER
    operation = NER

    def prepare(self, request: NerInput) -> list[str]:
        return request.texts

    def finish(self, request: NerInput, outputs: list[Entities]) -> list[Entities]:
        return outputs


class SpacyNer(_NerExpert):
    """Find named entities (people, organisations, places, dates) in text."""

    options_model = Options
    backend = "spacy"
    uses_torch = False  # spaCy's CNN pipelines run on numpy (thinc), not torch

    def load(self) -> None:
        spacy = require("spacy", "ner")
        self.nlp = spacy.load(self.context.path)
        if "ner" not in self.nlp.pipe_names:
            raise ValueError(f"spaCy pipeline at {self.context.path} has no 'ner' component")

    def unload(self) -> None:
        del self.nlp

    def forward(self, items: list[str]) -> list[Entities]:
        docs = self.nlp.pipe(items, batch_size=self.batch_size)
        return [
            Entities(
                [Entity(e.label_, e.text, e.start_char, e.end_char, None) for e in doc.ents],
                len(doc),
            )
            for doc in docs
        ]


class TokenClassificationNer(_NerExpert):
    """Find named entities in text (transformers token classification)."""

    options_model = TokenClassifierOptions
    backend = "token-classification"

    def load(self) -> None:
        transformers = require("transformers", "text")
        path = str(self.context.path)
        self.pipeline = transformers.pipeline(
            "token-classification",
            model=transformers.AutoModelForTokenClassification.from_pretrained(
                path, local_files_only=True
            ),
            tokenizer=transformers.AutoTokenizer.from_pretrained(path, local_files_only=True),
            aggregation_strategy=self.context.options.get("aggregation_strategy", "simple"),
            device=self.context.device,
        )

    def unload(self) -> None:
        del self.pipeline

    def resident_bytes(self) -> int | None:
        return torch_bytes(self.pipeline.model)

    def forward(self, items: list[str]) -> list[Entities]:
        results: Any = self.pipeline(items, batch_size=self.batch_size)
        tokens = [len(ids) for ids in self.pipeline.tokenizer(items)["input_ids"]]
        return [
            Entities(
                [
                    Entity(
                        str(r.get("entity_group", r.get("entity"))),
                        text[int(r["start"]) : int(r["end"])],
                        int(r["start"]),
                        int(r["end"]),
                        float(r["score"]),
                    )
                    for r in found
                ],
                count,
            )
            for text, found, count in zip(items, results, tokens, strict=True)
        ]
