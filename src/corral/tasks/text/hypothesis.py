"""Zero-shot hypothesis templates: a client's string with one slot for the label.

The template comes from the client, so it is never a format string (``str.format``
evaluates ``{0.__class__}`` and friends): it must hold exactly one ``{}`` or
``{label}`` and no other brace, and the label is put in by plain replacement.
"""

from __future__ import annotations

__all__ = ["SLOTS", "check_template", "distinct_labels", "fill_template"]

SLOTS = ("{}", "{label}")


def check_template(template: str) -> str:
    """``template`` itself, or ValueError saying what is wrong with it."""
    slots = [slot for slot in SLOTS if slot in template]
    count = sum(template.count(slot) for slot in SLOTS)
    rest = template
    for slot in SLOTS:
        rest = rest.replace(slot, "")
    if count != 1 or "{" in rest or "}" in rest:
        found = f"{count} slots" if count != 1 else "another brace"
        raise ValueError(
            "hypothesis_template takes exactly one '{}' (or '{label}') for the label and no "
            f"other braces; this one has {found}"
        )
    assert slots
    return template


def fill_template(template: str, label: str) -> str:
    """The hypothesis for ``label`` (the template checked first)."""
    check_template(template)
    slot = "{}" if "{}" in template else "{label}"
    return template.replace(slot, label)


def distinct_labels(labels: list[str] | None) -> list[str] | None:
    """``labels`` itself, or ValueError naming a label given twice (its scores would
    be ambiguous)."""
    seen: set[str] = set()
    for label in labels or []:
        if label in seen:
            raise ValueError(f"labels holds {label!r} twice; give each label once")
        seen.add(label)
    return labels
