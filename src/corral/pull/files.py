"""Which files of a hub repo a backend actually loads (never the whole repo).

Transformers-style backends take config and tokenizer files plus one weights format
(safetensors over ``.bin``); sentence-transformers also takes its module folders
(``1_Pooling/config.json``); ONNX detectors take the ``.onnx``; llama.cpp takes one
GGUF quantisation, picked by ``options.quant`` (default a Q4_K_M-class file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corral.errors import CorralError

__all__ = ["DEFAULT_QUANTS", "FileChoice", "select_files"]

# preferred GGUF quantisations when options.quant is not set: Q4_K_M first
DEFAULT_QUANTS = ("Q4_K_M", "Q4_K_S", "Q4_0", "Q5_K_M", "Q5_0", "Q8_0", "F16")

_TOP_LEVEL = re.compile(r"^[^/]+$")
_MODULE_DIR = re.compile(r"^\d+_[A-Za-z]+/[^/]+$")  # sentence-transformers modules
_CONFIG_NAMES = re.compile(
    r"(\.json|\.txt|\.model|\.tiktoken|\.yaml)$|^(tokenizer|vocab|merges|spiece|sentencepiece)",
)
_SKIP = re.compile(r"(^|/)(training_args\.bin|optimizer\.pt|scheduler\.pt|rng_state.*)$")
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")

_TRANSFORMERS_BACKENDS = frozenset(
    {
        "sentence-transformers",
        "bi-encoder",
        "similarity",
        "cross-encoder",
        "nli",
        "sequence-classification",
        "token-classification",
        "layoutlmv3",
        "chronos",
    }
)


@dataclass(frozen=True)
class FileChoice:
    files: list[str]
    note: str = ""  # e.g. which GGUF quantisation was picked, out of how many


def select_files(backend: str, names: Sequence[str], options: Mapping[str, Any]) -> FileChoice:
    """The repo files ``backend`` loads, out of ``names`` (the repo's file list)."""
    if backend == "llama-cpp":
        return _pick_gguf(names, options)
    if backend in ("onnx-yolo", "onnx-detr"):
        return _onnx(names, options)
    if backend in _TRANSFORMERS_BACKENDS:
        return FileChoice(_transformers(names, modules=backend != "chronos"))
    raise CorralError(f"corral does not know which files backend {backend!r} loads")


def _transformers(names: Sequence[str], *, modules: bool) -> list[str]:
    def placed(name: str) -> bool:
        return bool(_TOP_LEVEL.match(name) or (modules and _MODULE_DIR.match(name)))

    usable = [n for n in names if placed(n) and not _SKIP.search(n)]
    configs = [n for n in usable if _CONFIG_NAMES.search(n.rsplit("/", 1)[-1])]
    weights = [n for n in usable if n.endswith(".safetensors")]
    if not weights:  # older checkpoints: PyTorch pickles only
        weights = [n for n in usable if n.endswith(".bin")]
    if any(n.endswith(".safetensors.index.json") for n in configs):
        configs = [n for n in configs if not n.endswith(".bin.index.json")]
    return sorted(set(configs + weights))


def _onnx(names: Sequence[str], options: Mapping[str, Any]) -> FileChoice:
    wanted = options.get("file")
    onnx = [n for n in names if n.endswith(".onnx") and (wanted is None or n == wanted)]
    if not onnx:
        raise CorralError("the repo holds no .onnx file" + (f" named {wanted!r}" if wanted else ""))
    if len(onnx) > 1:
        raise CorralError(f"the repo holds {len(onnx)} .onnx files; set options.file to one")
    extras = [n for n in names if _TOP_LEVEL.match(n) and n.endswith((".json", ".yaml"))]
    return FileChoice(sorted({*onnx, *extras}))


def _pick_gguf(names: Sequence[str], options: Mapping[str, Any]) -> FileChoice:
    ggufs = [n for n in names if n.lower().endswith(".gguf") and "mmproj" not in n.lower()]
    if not ggufs:
        raise CorralError("the repo holds no .gguf file (llama.cpp loads only GGUF)")
    if options.get("file"):
        chosen = [n for n in ggufs if n == options["file"]]
        if not chosen:
            raise CorralError(f"no GGUF named {options['file']!r}; the repo has: {_list(ggufs)}")
        return FileChoice(_with_shards(chosen[0], ggufs), f"picked {chosen[0]} (options.file)")
    quant = options.get("quant")
    for wanted in [str(quant)] if quant else list(DEFAULT_QUANTS):
        matching = sorted(n for n in ggufs if _has_quant(n, wanted))
        if matching:
            how = "options.quant" if quant else "default quantisation"
            note = f"picked {matching[0]} ({wanted}, {how}) of {len(ggufs)} GGUF files"
            return FileChoice(_with_shards(matching[0], ggufs), note)
    if quant:
        raise CorralError(f"no GGUF with quantisation {quant!r}; the repo has: {_list(ggufs)}")
    return FileChoice(_with_shards(ggufs[0], ggufs), f"picked {ggufs[0]} (the only kind there)")


def _has_quant(name: str, quant: str) -> bool:
    stem = name.rsplit("/", 1)[-1][: -len(".gguf")]
    return re.search(rf"(^|[.\-_]){re.escape(quant)}($|[.\-_])", stem, re.IGNORECASE) is not None


def _with_shards(first: str, ggufs: Sequence[str]) -> list[str]:
    """A split GGUF (``-00001-of-00003.gguf``) loads from all of its parts."""
    match = _SHARD.search(first)
    if match is None:
        return [first]
    prefix = first[: match.start()]
    return sorted(n for n in ggufs if n.startswith(prefix) and _SHARD.search(n))


def _list(names: Sequence[str]) -> str:
    return ", ".join(sorted(names)[:12]) + (" ..." if len(names) > 12 else "")
