"""Chat: in-process GGUF (llama.cpp) and OpenAI-style upstreams (Ollama, vLLM, hosted),
behind OpenAI's chat, completions and Responses routes."""

from __future__ import annotations

from corral.config import Task
from corral.tasks.family import Backend, TaskFamily

FAMILY = TaskFamily(
    name="chat",
    backends=(
        Backend(
            Task.CHAT,
            "llama-cpp",
            "corral.tasks.chat.llama_cpp:LlamaCppChat",
            ("llama_cpp",),
            "llm",
        ),
        Backend(
            Task.CHAT, "openai", "corral.tasks.chat.upstream:OpenAIUpstreamChat", ("openai",), "llm"
        ),
        Backend(Task.CHAT, "ollama", "corral.tasks.chat.upstream:OllamaChat", ("openai",), "llm"),
    ),
    defaults={Task.CHAT: "openai"},
    routes=(
        "corral.tasks.chat.api_completions",
        "corral.tasks.chat.api_responses",
        "corral.tasks.chat.api",
    ),
    # an LLM is the coordinator, not its tool (escalation and code models are offered apart)
)
