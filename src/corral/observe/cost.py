"""What each request cost, and what it would have cost on the default LLM alone.

The runtime measures and the meter prices: every expert call reports its compute
seconds (its share of a batch's forward pass) and tokens to ``CostMeter.charge``, which
prices them from the expert's ``cost:`` or the machine's ``observe.prices`` and adds the
charge to the request's trace. When the request ends, ``CostMeter.settle`` sums the
charges and prices the counterfactual: the same job done by the default LLM, from an
estimate of the tokens it would read and write, priced at the seconds per token that
LLM has been measured to take on this machine (``LlmRate``).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from corral.config import Config, CostConfig, ModelConfig, PriceConfig, Task
from corral.observe.trace import Charge, Trace, active_trace
from corral.tasks import FAMILIES

__all__ = ["CostMeter", "LlmRate", "llm_equivalent", "llm_tokens", "time_llm"]

CHARS_PER_TOKEN = 4.0  # the usual rule of thumb for English text under BPE vocabularies
PROMPT_OVERHEAD = 40  # the instruction that tells an LLM what to do with each item
# Tokens an LLM writes per item to do an expert's job, as each task family declares: a
# label, a relevance score, or a share of the item (NER's entities echoed back as JSON).
_ANSWER_TOKENS: dict[Task, float] = {t: n for f in FAMILIES for t, n in f.answer_tokens.items()}
_ANSWER_SHARE: dict[Task, float] = {t: s for f in FAMILIES for t, s in f.answer_share.items()}


def llm_tokens(text: str) -> int:
    """An LLM's token count for ``text``, estimated from its length."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def llm_equivalent(
    task: Task, items: Sequence[str], context: Sequence[str] = ()
) -> tuple[int, int]:
    """(read, written) tokens for the default LLM to do ``task`` on ``items``, one prompt
    per item; ``context`` (the labels, the query) is repeated in every prompt."""
    shared = sum(llm_tokens(c) for c in context) + PROMPT_OVERHEAD
    item_tokens = [llm_tokens(text) for text in items]
    read = sum(item_tokens) + shared * len(items)
    if task in _ANSWER_SHARE:
        written = sum(math.ceil(n * _ANSWER_SHARE[task]) for n in item_tokens)
    else:
        written = int(_ANSWER_TOKENS.get(task, 0) * len(items))
    return read, written


class LlmRate:
    """Seconds the LLM takes per prompt token and per generated token, fitted by least
    squares on its recent calls (prefill and decode differ by ten times or more)."""

    def __init__(self, window: int = 256) -> None:
        self._calls: collections.deque[tuple[int, int, float]] = collections.deque(maxlen=window)
        self._fit: tuple[float, float] | None = None  # refitted after each new call only

    def observe(self, read: int, written: int, seconds: float) -> None:
        if read + written > 0 and seconds > 0:
            self._calls.append((read, written, seconds))
            self._fit = None

    @property
    def measured(self) -> bool:
        return bool(self._calls)

    def per_token(self) -> tuple[float, float]:
        """(seconds per prompt token, seconds per generated token)."""
        if self._fit is None:
            self._fit = self._fitted()
        return self._fit

    def _fitted(self) -> tuple[float, float]:
        calls = np.array(self._calls, dtype=float)
        if len(calls) == 0:
            return 0.0, 0.0
        x, y = calls[:, :2], calls[:, 2]
        if len(calls) >= 2 and np.linalg.matrix_rank(x) == 2:
            (read, written), *_ = np.linalg.lstsq(x, y, rcond=None)
            if read >= 0 and written >= 0:
                return float(read), float(written)
        blended = float(y.sum() / x.sum())  # too few or too alike calls to tell them apart
        return blended, blended

    def seconds(self, read: int, written: int) -> float:
        per_read, per_written = self.per_token()
        return read * per_read + written * per_written


@dataclass(frozen=True)
class _Price:
    per_token: float  # per token read or written
    per_second: float  # per compute second of this expert


class CostMeter:
    """Prices expert calls and settles each request's cost and counterfactual."""

    def __init__(
        self, config: Config, *, default_llm: str | None, remote: frozenset[str] = frozenset()
    ) -> None:
        self.default_llm = default_llm  # the LLM the counterfactual is priced on
        self.rate = LlmRate()
        self._config = config
        self._remote = remote  # experts served elsewhere (upstream APIs): no compute price
        self._prices: dict[tuple[str, str], _Price] = {}

    def price(self, expert: str, device: str) -> _Price:
        key = (expert, device)
        if key not in self._prices:
            spec = self._config.model_named(expert)
            remote = expert in self._remote
            self._prices[key] = _price_of(spec, device, self._config.observe.prices, remote)
        return self._prices[key]

    def charge(self, expert: str, device: str, seconds: float, read: int, written: int) -> None:
        """One expert call's compute seconds and tokens, priced and added to the trace."""
        if expert == self.default_llm:
            self.rate.observe(read, written, seconds)
        price = self.price(expert, device)
        cost = seconds * price.per_second + (read + written) * price.per_token
        trace = active_trace()
        if trace is not None:
            charge = Charge(expert, device, seconds, read, written, cost, trace.elapsed())
            trace.charges.append(charge)

    def settle(self, trace: Trace) -> None:
        """Sum the request's charges and price its LLM-only counterfactual."""
        trace.cost = sum(c.cost for c in trace.charges)
        only_llm = [c for c in trace.charges if c.expert == self.default_llm]
        if only_llm and len(only_llm) == len(trace.charges):
            trace.counterfactual_cost = trace.cost  # the LLM alone did serve it
            return
        if trace.llm_tokens is None:  # a chat request: the first generation's size
            generated = next((c for c in trace.charges if c.tokens_out), None)
            if generated is not None:
                trace.llm_tokens = (generated.tokens_in, generated.tokens_out)
        if self.default_llm is None or trace.llm_tokens is None:
            return
        read, written = trace.llm_tokens
        device = next((c.device for c in only_llm), "cpu")
        price = self.price(self.default_llm, device)
        if price.per_second and not self.rate.measured:
            return  # no LLM call has been timed yet: unknown, not zero
        seconds = self.rate.seconds(read, written) if price.per_second else 0.0
        trace.counterfactual_cost = seconds * price.per_second + (read + written) * price.per_token


def _price_of(spec: ModelConfig | None, device: str, machine: PriceConfig, remote: bool) -> _Price:
    own = (spec.cost if spec is not None else None) or CostConfig()
    on_gpu = device.startswith("cuda") or device.startswith("mps")
    if on_gpu:
        per_second = own.per_gpu_second
        default = machine.gpu_hour / 3600
    else:
        per_second = own.per_cpu_second
        default = machine.cpu_hour / 3600
    if per_second is None:
        per_second = 0.0 if remote else default
    return _Price(per_token=(own.per_1k_tokens or 0.0) / 1000, per_second=per_second)


# A prompt-heavy call and a generation-heavy one, so the rate fit can tell the two apart.
_PROBES: tuple[tuple[str, int], ...] = (
    ("Reply OK. " + "The committee reviewed the quarterly figures and the audit notes. " * 12, 1),
    ("Count from one to forty in words, separated by commas.", 48),
)


async def time_llm(chat: Callable[[dict[str, Any]], Awaitable[object]]) -> None:
    """Time the default LLM on two probe prompts at start-up (``chat`` is the runtime's
    call, which reports the timings to the meter), so counterfactuals are priced from the
    first request on rather than after the first chat request."""
    for prompt, max_tokens in _PROBES:
        await chat(
            {
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0.0,
            }
        )
