"""Text encoders: embeddings, rerank, zero-shot and supervised classification, NER, behind
OpenAI's, Cohere's, TEI's and Infinity's routes as well as corral's own."""

from __future__ import annotations

from corral.config import Task
from corral.tasks.family import Backend, TaskFamily

_ST = ("torch", "sentence_transformers")
_HF = ("torch", "transformers")

FAMILY = TaskFamily(
    name="text",
    backends=(
        Backend(
            Task.EMBED,
            "sentence-transformers",
            "corral.tasks.text.embed_export:ExportableEmbedder",
            _ST,
            "text",
        ),
        Backend(
            Task.EMBED,
            "onnxruntime",
            "corral.tasks.text.embed_onnx:OnnxEmbedder",
            ("onnxruntime", "tokenizers", "transformers"),
            "onnx",
        ),
        Backend(
            Task.RERANK,
            "cross-encoder",
            "corral.tasks.text.rerank:CrossEncoderReranker",
            _ST,
            "text",
        ),
        Backend(
            Task.RERANK, "bi-encoder", "corral.tasks.text.rerank:BiEncoderReranker", _ST, "text"
        ),
        Backend(Task.CLASSIFY, "nli", "corral.tasks.text.classify:NliClassifier", _HF, "text"),
        Backend(
            Task.CLASSIFY,
            "sequence-classification",
            "corral.tasks.text.classify:SequenceClassifier",
            _HF,
            "text",
        ),
        Backend(
            Task.CLASSIFY,
            "similarity",
            "corral.tasks.text.classify:SimilarityClassifier",
            _ST,
            "text",
        ),
        Backend(Task.NER, "spacy", "corral.tasks.text.ner:SpacyNer", ("spacy",), "ner"),
        Backend(
            Task.NER,
            "token-classification",
            "corral.tasks.text.ner:TokenClassificationNer",
            _HF,
            "text",
        ),
    ),
    defaults={
        Task.EMBED: "sentence-transformers",
        Task.RERANK: "cross-encoder",
        Task.CLASSIFY: "nli",
        Task.NER: "token-classification",
    },
    routes=(
        "corral.tasks.text.api_openai",
        "corral.tasks.text.api_cohere",
        "corral.tasks.text.api_compat",
        "corral.tasks.text.api",
    ),
    tools=frozenset({Task.RERANK, Task.CLASSIFY, Task.NER}),  # vectors mean nothing to an LLM
    # an LLM writes a label or a relevance score per item, NER's entities as JSON (about half
    # the text); embeddings have no LLM answer
    answer_tokens={Task.CLASSIFY: 4, Task.RERANK: 4, Task.EMBED: 0},
    answer_share={Task.NER: 0.5},
)
