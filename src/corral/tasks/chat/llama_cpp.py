"""In-process GGUF chat through llama-cpp-python.

The prompt is the model's own chat template rendered by corral (``chat_template.py``),
and llama.cpp writes a plain text completion: tool calls are parsed from it in the
template's format (``tool_calls.py``), and a call the caller demands (``tool_choice``
required or named) is generated under a JSON-schema grammar, so its arguments always parse.
With ``tool_choice: auto`` the model decides; a call it starts but botches is generated
again under the grammar.

One ``Llama`` context serves one request at a time, so every call runs on this expert's
own worker thread (the runtime gives each llama.cpp expert one). Streaming hands chunks
from that thread to the event loop through a queue; a client that disconnects stops
the generation at the next token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from corral.errors import ExpertUnavailable, InvalidRequest
from corral.experts._memory import llama_bytes, llama_kv_bytes
from corral.experts.base import require
from corral.experts.options import LlamaCppOptions
from corral.tasks.chat.expert import COMPUTE_SECONDS, PROMPT, ChatExpert
from corral.tasks.chat.grammar_safety import UnsafeSchema, schema_grammar
from corral.tasks.chat.llama_build import repack_weights, weight_layout
from corral.tasks.chat.reply import chat_chunk, chat_logprobs, chat_reply, usage
from corral.tasks.chat.template import CHATML, ChatTemplate
from corral.tasks.chat.tool_calls import forced_call, forced_call_schema, openai_calls

__all__ = ["LlamaCppChat"]

_DONE = object()


def find_gguf(path: Path) -> Path:
    """The GGUF file itself, or the only/first one in a directory."""
    if path.is_file():
        return path
    files = sorted(path.glob("*.gguf"))
    if not files:
        raise ExpertUnavailable(f"no .gguf file in {path}; set `path:` to the GGUF file")
    return files[0]


@dataclass
class _Plan:
    """One request as llama.cpp will run it: the prompt, its grammar, and what to parse."""

    prompt: str
    tokens: list[int]
    grammar: Any = None
    tools: list[dict[str, Any]] | None = None  # offered: the reply may hold calls
    forced: bool = False  # the reply is one call's JSON (the prompt ends with its opening)


class LlamaCppChat(ChatExpert):
    """Chat with a local GGUF model (llama.cpp)."""

    options_model = LlamaCppOptions
    backend: ClassVar[str] = "llama-cpp"
    uses_torch: ClassVar[bool] = False
    isolate_by_default: ClassVar[bool] = True  # a signal in libllama must not end the server

    def load(self) -> None:
        llama_cpp = require("llama_cpp", "llm")
        options = self.context.options
        model_file = find_gguf(self.context.path)
        on_gpu = self.context.device.startswith("cuda")
        parallel = int(options.get("parallel", 1))
        if parallel < 1:
            raise InvalidRequest("options.parallel must be at least 1", param="options")
        self.repack = repack_weights(
            llama_cpp, options.get("repack"), model=self.context.spec.name
        )

        def context() -> Any:
            with weight_layout(llama_cpp, repack=self.repack):
                return llama_cpp.Llama(
                    model_path=str(model_file),
                    n_ctx=int(options.get("n_ctx", 2048)),
                    n_threads=int(options.get("n_threads", os.cpu_count() or 2)),
                    n_gpu_layers=int(options.get("n_gpu_layers", -1 if on_gpu else 0)),
                    seed=int(options.get("seed", 0xC0221)),
                    # logprobs need every position's logits kept: about 4x slower generation here
                    logits_all=bool(options.get("logprobs", False)),
                    verbose=False,
                )

        # ``parallel`` contexts over one memory-mapped file: the weights' pages are shared,
        # each context adds its own KV cache, and each serves one request at a time
        self.llm = context()
        self._contexts = [self.llm] + [context() for _ in range(parallel - 1)]
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for llm in self._contexts:
            self._free.put(llm)
        self._executor = (
            ThreadPoolExecutor(parallel, thread_name_prefix=f"corral-{self.context.spec.name}")
            if parallel > 1
            else self.context.executor
        )
        self.template = _template_of(self.llm, options)

    def unload(self) -> None:
        for llm in self._contexts:
            llm.close()
        if self._executor is not self.context.executor and self._executor is not None:
            self._executor.shutdown(wait=False)
        del self.llm, self._contexts

    def resident_bytes(self) -> int | None:
        return llama_bytes(self.llm) + (len(self._contexts) - 1) * llama_kv_bytes(self.llm)

    @contextlib.contextmanager
    def _slot(self) -> Iterator[Any]:
        """A free context for one request (waits on this worker thread while all are busy)."""
        llm = self._free.get()
        try:
            yield llm
        finally:
            self._free.put(llm)

    async def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        kwargs = self._kwargs(params)

        def timed() -> dict[str, Any]:
            with self._slot() as llm:
                started = time.perf_counter()
                plan = self._plan(llm, kwargs)
                result = self._reply(llm, plan, kwargs)
            return {**result, COMPUTE_SECONDS: time.perf_counter() - started, PROMPT: plan.prompt}

        return await loop.run_in_executor(self._executor, timed)

    async def stream(self, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        kwargs = self._kwargs(params)

        def produce() -> None:
            try:
                with self._slot() as llm:
                    for chunk in self._chunks(llm, self._plan(llm, kwargs), kwargs):
                        loop.call_soon_threadsafe(chunks.put_nowait, chunk)
                        if stop.is_set():
                            break
            except ValueError as exc:
                loop.call_soon_threadsafe(chunks.put_nowait, _as_request_error(exc))
            except BaseException as exc:  # handed to the consumer, raised there
                loop.call_soon_threadsafe(chunks.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(chunks.put_nowait, _DONE)

        producer = loop.run_in_executor(self._executor, produce)
        try:
            while (item := await chunks.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            await asyncio.shield(producer)

    # --- one request ------------------------------------------------------------------
    def _kwargs(self, params: dict[str, Any]) -> dict[str, Any]:
        kwargs = _llama_kwargs(params)
        if kwargs.get("logprobs") and not self.context.options.get("logprobs", False):
            raise InvalidRequest(
                "this llama.cpp expert returns no logprobs: set `options: {logprobs: true}` "
                "on it (keeps every position's logits; generation about 4x slower)",
                param="logprobs",
            )
        # OpenAI's default is "until done"; a small local model may ramble to the end of its
        # context, so the config sets a cap (options.max_tokens) for requests that give none.
        kwargs.setdefault("max_tokens", int(self.context.options.get("max_tokens", 512)))
        vocabulary = self.llm.n_vocab()
        if any(int(token) >= vocabulary for token in kwargs.get("logit_bias") or {}):
            raise InvalidRequest(
                f"logit_bias: token ids are this model's own, below {vocabulary}",
                param="logit_bias",
            )
        return kwargs

    def _plan(self, llm: Any, kwargs: dict[str, Any]) -> _Plan:
        tools, choice = kwargs.get("tools"), kwargs.get("tool_choice") or "auto"
        offered = tools if tools and choice != "none" else None
        prompt = self.template.render(kwargs["messages"], offered)
        if offered and choice != "auto":
            demanded = offered if choice == "required" else _named(offered, choice)
            return self._forced(llm, prompt, demanded)
        grammar = _response_grammar(kwargs.get("response_format"))
        return _Plan(prompt, _tokens(llm, prompt), grammar, tools=offered)

    def _forced(self, llm: Any, prompt: str, tools: list[dict[str, Any]]) -> _Plan:
        fmt = self.template.tool_format
        opened = prompt + fmt.opening
        grammar = _grammar(forced_call_schema(tools, fmt))
        return _Plan(opened, _tokens(llm, opened), grammar, tools=tools, forced=True)

    def _generate(self, llm: Any, plan: _Plan, kwargs: dict[str, Any], *, stream: bool) -> Any:
        top = kwargs.get("top_logprobs") or 1
        try:
            return llm.create_completion(
                prompt=plan.tokens,
                grammar=plan.grammar,
                stream=stream,
                logprobs=top if kwargs.get("logprobs") else None,
                stop=[*_stops(kwargs.get("stop")), *filter(None, [self.template.eos])],
                **{k: v for k, v in kwargs.items() if k in _SAMPLING},
            )
        except ValueError as exc:
            raise _as_request_error(exc) from exc

    def _reply(self, llm: Any, plan: _Plan, kwargs: dict[str, Any]) -> dict[str, Any]:
        completion = self._generate(llm, plan, kwargs, stream=False)
        choice = completion["choices"][0]
        text, reason = choice["text"], choice.get("finish_reason")
        spent = int(completion["usage"]["completion_tokens"])
        content, calls, more = self._settle(llm, plan, kwargs, text)
        spent += more
        logprobs = chat_logprobs(choice.get("logprobs")) if kwargs.get("logprobs") else None
        return chat_reply(
            self.context.spec.name,
            None if calls and not content else content,
            openai_calls(calls),
            reason,
            usage(len(plan.tokens), spent),
            logprobs,
        )

    def _chunks(
        self, llm: Any, plan: _Plan, kwargs: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """Stream chunks: text as it comes, held back while it may still open a tool call;
        calls as one delta each once the reply is whole."""
        started = time.perf_counter()
        chunk_id, model = f"chatcmpl-{uuid.uuid4().hex}", self.context.spec.name
        yield chat_chunk(chunk_id, model, {"role": "assistant", "content": ""})
        held, written, reason = "", 0, None
        fmt = self.template.tool_format
        for piece in self._generate(llm, plan, kwargs, stream=True):
            choice = piece["choices"][0]
            written += choice.get("finish_reason") is None  # one chunk a token; the last says why
            reason = choice.get("finish_reason") or reason
            text = choice.get("text") or ""
            logprobs = chat_logprobs(choice.get("logprobs")) if kwargs.get("logprobs") else None
            if plan.tools and (plan.forced or fmt.may_start(held + text)):
                held += text
                continue
            if text or held:
                yield chat_chunk(chunk_id, model, {"content": held + text}, logprobs=logprobs)
            held = ""
        if held:
            reply = self._reply_from_held(llm, plan, kwargs, held)
            message = reply["choices"][0]["message"]
            if message.get("content"):
                yield chat_chunk(chunk_id, model, {"content": message["content"]})
            calls = message.get("tool_calls") or []
            for index, call in enumerate(calls):
                yield chat_chunk(chunk_id, model, {"tool_calls": [{"index": index, **call}]})
            reason = "tool_calls" if calls else reason
        yield chat_chunk(chunk_id, model, {}, finish_reason=reason or "stop")
        yield {
            **chat_chunk(chunk_id, model, {}),
            "choices": [],
            "usage": usage(len(plan.tokens), written),
            COMPUTE_SECONDS: time.perf_counter() - started,
            PROMPT: plan.prompt,
        }

    def _reply_from_held(
        self, llm: Any, plan: _Plan, kwargs: dict[str, Any], held: str
    ) -> dict[str, Any]:
        content, calls, _ = self._settle(llm, plan, kwargs, held)
        return chat_reply("", content, openai_calls(calls), None, usage(0, 0))

    def _settle(
        self, llm: Any, plan: _Plan, kwargs: dict[str, Any], text: str
    ) -> tuple[str, list[dict[str, Any]], int]:
        """(content, calls, extra tokens written) from a reply's text. A call the model
        botched is made again under the grammar; calls whose results the conversation
        already holds are not made again: the model answers from those results instead
        (SmolLM2 otherwise repeats a call after its result, for ever)."""
        content, calls = self._calls_in(plan, text)
        spent = 0
        if plan.tools and not plan.forced and not calls and self._started_call(text):
            retry = self._forced(llm, plan.prompt, plan.tools)
            completion = self._generate(llm, retry, kwargs, stream=False)
            spent += int(completion["usage"]["completion_tokens"])
            content, calls = self._calls_in(retry, completion["choices"][0]["text"])
        if calls and not plan.forced and _all_answered(calls, kwargs["messages"]):
            prompt = self.template.render(kwargs["messages"], None)
            plain = _Plan(prompt, _tokens(llm, prompt))
            completion = self._generate(llm, plain, kwargs, stream=False)
            spent += int(completion["usage"]["completion_tokens"])
            content, calls = completion["choices"][0]["text"], []
        return content, calls, spent

    def _calls_in(self, plan: _Plan, text: str) -> tuple[str, list[dict[str, Any]]]:
        if not plan.tools:
            return text, []
        if plan.forced:
            calls = forced_call(text)
            return ("" if calls else text), calls
        return self.template.tool_format.parse(text)

    def _started_call(self, text: str) -> bool:
        fmt = self.template.tool_format
        head = text.lstrip()
        return bool(fmt.opening.strip()) and head.startswith(fmt.opening.strip())


def _template_of(llm: Any, options: dict[str, Any]) -> ChatTemplate:
    """The GGUF's own template; else ``options.chat_template`` (Jinja) or ``chat_format`` (a
    llama-cpp-python format name); else ChatML."""
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    eos = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
    if options.get("chat_template"):
        return ChatTemplate(str(options["chat_template"]), bos=bos, eos=eos,
                            origin="options.chat_template")
    if "tokenizer.chat_template" in llm.metadata and not options.get("chat_format"):
        return ChatTemplate(llm.metadata["tokenizer.chat_template"], bos=bos, eos=eos,
                            origin="gguf")
    if options.get("chat_format"):
        return ChatTemplate.named(str(options["chat_format"]), eos=eos)
    return ChatTemplate(CHATML, bos=bos, eos="<|im_end|>", origin="chatml (the model has none)")


def _tokens(llm: Any, prompt: str) -> list[int]:
    tokens: list[int] = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    if len(tokens) >= llm.n_ctx():
        raise InvalidRequest(
            f"Requested tokens ({len(tokens)}) exceed context window of {llm.n_ctx()}; "
            "shorten the messages or raise the expert's options.n_ctx",
            param="messages",
        )
    return tokens


def _all_answered(calls: list[dict[str, Any]], messages: list[dict[str, Any]]) -> bool:
    """Whether every call repeats one (same function, same arguments) that an earlier
    ``tool`` message already answered."""
    answered_ids = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    answered = {
        (c["function"]["name"], _canonical(c["function"].get("arguments")))
        for m in messages
        for c in m.get("tool_calls") or []
        if c.get("id") in answered_ids
    }
    return all((c["name"], _canonical(c["arguments"])) in answered for c in calls)


def _canonical(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return arguments
    return json.dumps(arguments, sort_keys=True)


def _named(tools: list[dict[str, Any]], choice: Any) -> list[dict[str, Any]]:
    name = choice["function"]["name"] if isinstance(choice, dict) else str(choice)
    named = [t for t in tools if t["function"]["name"] == name]
    if not named:
        raise InvalidRequest(f"tool_choice names {name!r}, which is not in tools",
                             param="tool_choice")
    return named


def _grammar(schema: dict[str, Any], param: str = "tools") -> Any:
    """A grammar llama.cpp can run (``grammar_safety``): a schema part no safe grammar
    expresses is a 422 naming its path, never a crash at sampling."""
    from llama_cpp import LlamaGrammar

    try:
        text = schema_grammar(schema)
    except UnsafeSchema as exc:
        raise InvalidRequest(f"{param}: {exc}", param=param) from exc
    except Exception as exc:  # llama-cpp-python's converter cannot express this schema
        raise InvalidRequest(
            f"llama.cpp cannot turn this JSON schema into a grammar: {exc}", param=param
        ) from exc
    return LlamaGrammar.from_string(text, verbose=False)


def _response_grammar(response_format: dict[str, Any] | None) -> Any:
    if not response_format or response_format.get("type") not in ("json_object", "json_schema"):
        return None
    schema = response_format.get("schema") or response_format.get("json_schema", {}).get("schema")
    if schema:
        return _grammar(schema, param="response_format")
    from llama_cpp import LlamaGrammar
    from llama_cpp.llama_grammar import JSON_GBNF

    return LlamaGrammar.from_string(JSON_GBNF, verbose=False)


def _stops(stop: Any) -> list[str]:
    if not stop:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def _as_request_error(exc: ValueError) -> Exception:
    """llama.cpp says "Requested tokens (N) exceed context window of M" for a prompt too
    long for the context: the caller's to shorten (422), not a server failure."""
    if "context window" in str(exc) or "exceed" in str(exc):
        return InvalidRequest(
            f"{exc}; shorten the messages or raise the expert's options.n_ctx", param="messages"
        )
    return exc


def _llama_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """OpenAI request fields this backend reads (legacy ``functions`` arrive as ``tools``:
    ``server/chat_compat.py`` translates them at the edge)."""
    kwargs = {k: v for k, v in params.items() if v is not None and k in _PASSED}
    if params.get("max_completion_tokens") and not params.get("max_tokens"):
        kwargs["max_tokens"] = params["max_completion_tokens"]
    if params.get("logit_bias"):
        kwargs["logit_bias"] = {int(k): float(v) for k, v in params["logit_bias"].items()}
    return kwargs


# what generation itself reads, passed to ``Llama.create_completion`` as is
_SAMPLING = frozenset(
    {"temperature", "top_p", "max_tokens", "seed", "presence_penalty", "frequency_penalty",
     "logit_bias"}
)
_PASSED = _SAMPLING | {
    "messages",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "logprobs",
    "top_logprobs",
}
