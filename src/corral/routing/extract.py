"""Turning a chat message into a non-chat expert's input: one extractor per family.

A semantic route (or the chat ``auto`` router) decides *which* expert a message is for;
the extractor finds *what* that expert should read in it:

* classify / ner: the quoted passage (else the whole message) as the text;
* forecast: a run of numbers (``1, 2, 3, ...`` or ``[1, 2, 3]``; one series per line of a
  table), the horizon from "next 6" / "6 months" (else a quarter of the series, <= 12);
* detect / document: attached images (``image_url`` parts with a base64 data: URL) and
  files (``{"type": "file", "file": {"file_id": ...}}`` parts, or ``file-...`` ids in
  the text); inline images are kept in the server's file store and passed by id, as the
  coordinator's own tool calls do;
* every family: a JSON object in the message that is a valid input for the expert (an
  anomaly detector's ``{"detector", "data"}``, a graph model's ``{"graph", "nodes"}``).

When nothing is found, ``Extracted.missing`` says what to send: the router answers with
that request for data rather than letting an LLM guess a forecast or a detection.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from corral.config import Task
from corral.errors import CorralError
from corral.uploads.files import FileStore
from corral.uploads.images import decode_base64

__all__ = ["Extracted", "extract", "routing_text"]

# possessive quantifiers and a start that is not inside another number: linear time on
# any input (a long digit string must not be tried from every position)
_NUMBER = r"(?<![\d.])[-+]?+(?:\d++(?:\.\d*+)?+|\.\d++)(?:[eE][-+]?+\d++)?+"
_RUN = re.compile(rf"{_NUMBER}(?:(?:\s*[,;]\s*|[ \t]+){_NUMBER}){{3,}}")
_HORIZON = re.compile(
    r"(?:next|following|coming|another)\s+(\d{1,5})\b|\b(\d{1,5})\s+(?:more\s+)?"
    r"(?:steps|values|points|periods|days|weeks|months|quarters|years|hours)",
    re.IGNORECASE,
)
_FILE_ID = re.compile(r"\bfile-[0-9a-f]{24}\b")

_ASK: dict[Task, str] = {
    Task.FORECAST: "the series' values in the message (e.g. 'forecast the next 6: 112, 118, "
    "132, 129, 121, 135, 148, 148')",
    Task.DETECT: "an image (an image_url content part with a base64 data: URL, or a file_id "
    "from POST /v1/files)",
    Task.DOCUMENT: "the document (a file content part with a file_id from POST /v1/files, or "
    "an image_url part with a base64 data: URL)",
    Task.ANOMALY: 'a JSON object with the fitted detector\'s name and rows, e.g. {"detector": '
    '"sensors", "data": [[0.1, 2.0], [9.0, -4.0]]}',
    Task.GRAPH: 'a JSON object with the fitted graph model\'s name and nodes, e.g. {"graph": '
    '"payments", "nodes": ["b", "c"]}',
    Task.RERANK: 'a JSON object with a query and documents, e.g. {"query": "...", '
    '"documents": ["...", "..."]}',
}


@dataclass(frozen=True)
class Extracted:
    """The expert's arguments (valid for its input model), or what to ask the user for."""

    arguments: dict[str, Any] | None
    found: str = ""  # what was read, for the trace
    missing: str = ""


def routing_text(text: str) -> str:
    """The message without its data (number runs, JSON), for embedding against route
    examples: a long list of numbers otherwise drowns the instruction."""
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        text = text[:start] + " " + text[end + 1 :]
    return re.sub(r"\s+", " ", _RUN.sub(" ", text)).strip() or text


def extract(
    task: Task,
    input_model: type[BaseModel],
    messages: list[dict[str, Any]],
    *,
    subject: str,
    labels: list[str] | None,
    files: FileStore,
) -> Extracted:
    """Find ``task``'s input in the last user message (see the module docstring)."""
    message = _last_user(messages)
    text = _text_of(message)
    if task in (Task.CLASSIFY, Task.NER):
        arguments: dict[str, Any] = {"texts": [subject]}
        if labels:
            arguments["labels"] = labels
        return Extracted(arguments, "the quoted passage" if subject != text else "the message")
    as_json = _json_arguments(text, input_model)
    if as_json is not None:
        return Extracted(as_json, "a JSON object")
    if task == Task.FORECAST:
        return _forecast(text)
    if task in (Task.DETECT, Task.DOCUMENT):
        ids = _attachments(message, text, files)
        if ids:
            arguments = {"file_ids": ids} if task == Task.DETECT else {"file_id": ids[0]}
            return Extracted(arguments, f"{len(ids)} attachment(s)")
    return Extracted(None, missing=_ASK.get(task, f"the {task.value} expert's input as JSON"))


def _forecast(text: str) -> Extracted:
    rows = [_RUN.search(line) for line in text.splitlines()]
    runs = [m for m in rows if m is not None]
    if not runs:
        return Extracted(None, missing=_ASK[Task.FORECAST])
    series = [[float(v) for v in re.findall(_NUMBER, m.group(0))] for m in runs]
    outside = _RUN.sub(" ", text)
    found = _HORIZON.search(outside)
    longest = max(len(s) for s in series)
    horizon = int(found.group(1) or found.group(2)) if found else min(12, max(1, longest // 4))
    arguments = {"series": series, "horizon": max(1, horizon)}
    return Extracted(arguments, f"{len(series)} series of {longest} values, horizon {horizon}")


def _attachments(message: dict[str, Any], text: str, files: FileStore) -> list[str]:
    """File ids attached or named, and inline images stored as files (the store's
    limits apply: a too-large image is a 413 naming max_file_bytes)."""
    ids: list[str] = []
    content = message.get("content")
    parts = content if isinstance(content, list) else []
    for i, part in enumerate(parts):
        if not isinstance(part, dict):
            continue
        if part.get("type") == "file" and isinstance(part.get("file"), dict):
            file_id = part["file"].get("file_id")
            if isinstance(file_id, str):
                ids.append(file_id)
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str):
                data = decode_base64(url, param=f"messages[-1].content[{i}].image_url")
                ids.append(files.put(data, content_type="image"))
    ids += [m for m in _FILE_ID.findall(text) if m not in ids]
    return ids


def _json_arguments(text: str, input_model: type[BaseModel]) -> dict[str, Any] | None:
    start, end = text.find("{"), text.rfind("}")
    if not 0 <= start < end:
        return None
    try:
        value = json.loads(text[start : end + 1])
        input_model.model_validate(value)
    except (ValueError, ValidationError, CorralError):
        return None
    return value if isinstance(value, dict) else None


def _last_user(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return next((m for m in reversed(messages) if m.get("role") == "user"), {})


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""
