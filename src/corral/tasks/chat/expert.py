"""Chat experts: one interface over in-process GGUF (llama.cpp) and OpenAI-style upstreams.

Generation does not micro-batch like encoders do (an upstream batches for itself, and
one llama.cpp context serves one request at a time), so chat experts expose
``complete`` and ``stream`` that take and return OpenAI-shaped dicts. Both backends speak
that shape natively, so the adapters stay thin.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from corral.config import LimitsConfig, Task
from corral.experts.base import BaseExpert
from corral.experts.operation import Operation
from corral.input_limits import check_texts
from corral.tasks.chat.reply import chat_reply, usage

__all__ = [
    "CHAT",
    "COMPUTE_SECONDS", "PROMPT", "ChatExpert", "ChatInput", "chat_completion"]

# Key an in-process backend sets on a completion (or the stream's usage chunk): the seconds
# it spent generating, without the time it queued behind other requests. The runtime takes
# it off before the reply leaves; without it the call's wall time is used.
COMPUTE_SECONDS = "_corral_compute_seconds"
# Key for the prompt an in-process backend rendered: kept in the trace at log level debug.
PROMPT = "_corral_prompt"


class ChatInput(BaseModel):
    """What a coordinator passes when it escalates to another LLM."""

    prompt: str = Field(min_length=1, description="The task or question for the larger model.")

    def check_limits(self, limits: LimitsConfig) -> None:
        """``server.limits`` on this input (413 naming the limit), as built over HTTP
        or by a tool call."""
        check_texts([self.prompt], limits, param="prompt")


# a prompt for another LLM (the coordinator's escalate and code tools): its reply's text
CHAT = Operation(Task.CHAT, ChatInput, str)


class ChatExpert(BaseExpert):
    """Answer chat messages (OpenAI chat-completions parameters in, OpenAI dicts out)."""

    task: ClassVar[Task] = Task.CHAT
    operation = CHAT

    @abstractmethod
    async def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        """A whole ``chat.completion`` object."""

    @abstractmethod
    def stream(self, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``chat.completion.chunk`` objects; the last carries ``usage``."""


def chat_completion(content: str, *, model: str) -> dict[str, Any]:
    """A ``chat.completion`` object for an answer that no LLM generated (a routed
    expert's result returned as is), so clients see the usual shape."""
    return chat_reply(model, content, [], "stop", usage(0, 0))
