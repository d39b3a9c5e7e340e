"""Text embeddings through sentence-transformers."""

from __future__ import annotations

from pydantic import BaseModel, Field

from corral.config import Task
from corral.experts.operation import Operation
from corral.experts.options import EncoderOptions
from corral.tasks.text._sentence import Embedding, SentenceEncoderExpert, Truncate, cuts_text

__all__ = ["EMBED", "EmbedInput", "Embedding", "SentenceTransformerEmbedder"]


class EmbedInput(BaseModel):
    texts: list[str] = Field(min_length=1, description="Texts to embed.")
    prompt_name: str | None = Field(None, description="One of the expert's `prompts`.")
    input_type: str | None = Field(
        None, description="Cohere's search_query, search_document, classification, clustering."
    )
    truncate: Truncate = Field("end", description="Which side of a too-long text is cut.")
    max_tokens: int | None = Field(None, ge=1, description="Cut each text to this many tokens.")


EMBED = Operation(Task.EMBED, EmbedInput, list[Embedding])


class SentenceTransformerEmbedder(SentenceEncoderExpert[EmbedInput, list[Embedding]]):
    """Embed texts into vectors for search, clustering and similarity."""

    options_model = EncoderOptions
    task = Task.EMBED
    backend = "sentence-transformers"
    operation = EMBED
    normalize = False

    def prepare(self, request: EmbedInput) -> list[str]:
        prompt = self.prompt(request.prompt_name, request.input_type)
        return self.fit(request.texts, prompt, request.truncate, request.max_tokens, "input")

    def prepare_blocks(self, request: EmbedInput) -> bool:
        return cuts_text(request.truncate, request.max_tokens)

    def finish(self, request: EmbedInput, outputs: list[Embedding]) -> list[Embedding]:
        return outputs
