"""``routing.difficulty``: which chat LLM answers ``model: "auto"``, by a learned
difficulty score of the conversation (fitted with ``corral route fit --difficulty``).

Two forms. ``{small: fast, large: powerful, large_share: 0.3}`` picks between two LLMs;
``{experts: [tiny, fast, powerful], escalate: [0.5, 0.2]}`` climbs a ladder of any
length, cheapest first (config order is the order of cost, as in ``routing.auto``): a
conversation goes to the first expert predicted capable of it, and ``escalate[i]`` is
the share of prompts the fit sends past ``experts[i]``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DifficultyConfig"]


class DifficultyConfig(BaseModel):
    """A ladder of chat LLMs, cheapest first, and how many prompts climb past each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experts: list[str] | None = Field(
        None, min_length=2, max_length=8, description="Chat experts, cheapest first."
    )
    escalate: list[float] | None = Field(
        None,
        description="Target share of prompts sent past each expert but the last "
        "(non-increasing); default: an equal share for each expert.",
    )
    small: str | None = Field(None, description="The two-LLM form: the cheap one...")
    large: str | None = Field(None, description="...and the one hard prompts go to.")
    large_share: float = Field(0.3, gt=0, lt=1, description="Target share sent to `large`.")

    @model_validator(mode="after")
    def _one_form(self) -> DifficultyConfig:
        pair = (self.small, self.large)
        if self.experts is None:
            if None in pair:
                raise ValueError("give `experts` (cheapest first) or both `small` and `large`")
            if self.escalate is not None:
                raise ValueError("`escalate` goes with `experts`; with small/large use large_share")
            return self
        if pair != (None, None) or "large_share" in self.model_fields_set:
            raise ValueError("give `experts` and `escalate`, or small/large/large_share, not both")
        if len(set(self.experts)) != len(self.experts):
            raise ValueError(f"experts names an expert twice: {self.experts}")
        if self.escalate is not None:
            if len(self.escalate) != len(self.experts) - 1:
                raise ValueError(
                    f"escalate needs {len(self.experts) - 1} shares (one per expert but the "
                    f"last), got {len(self.escalate)}"
                )
            if not all(0 < share < 1 for share in self.escalate):
                raise ValueError("each escalate share is between 0 and 1 (exclusive)")
            if any(b > a for a, b in zip(self.escalate, self.escalate[1:], strict=False)):
                raise ValueError("escalate shares must not increase up the ladder")
        return self

    @property
    def ladder(self) -> list[str]:
        """The experts, cheapest first."""
        if self.experts is not None:
            return list(self.experts)
        assert self.small is not None and self.large is not None
        return [self.small, self.large]

    @property
    def shares(self) -> list[float]:
        """Per expert but the last, the target share of prompts sent past it."""
        if self.experts is None:
            return [self.large_share]
        if self.escalate is not None:
            return list(self.escalate)
        n = len(self.experts)
        return [(n - 1 - i) / n for i in range(n - 1)]
