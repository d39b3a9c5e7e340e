"""Length grouping: mixed-length batches through corral's ONNX/OpenVINO sentence encoder,
each forward pass padded to its longest text (``length_groups``) vs the whole batch padded
to the longest one.

Batches of 64 texts as a busy embedder sees them: mostly short queries, some passages,
a few long documents (cut at 256 tokens). The encoders are the ones ``runtime: auto``
and ``runtime: onnx, quantize: int8`` serve (exported here into a temp state dir).
Alternating rounds, medians; the ratio goes into BENCHMARKS.md.

    python bench/embed_lengths.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _harness import machine, minilm_dir, write_section

from corral._vectors import unit_rows
from corral.tasks.text.embed_onnx import OnnxSentenceEncoder
from corral.tasks.text.onnx_export import ExportOptions, exported_model

BATCH = 64


def mixed_batches(count: int) -> list[list[str]]:
    """48 queries (5-15 words), 12 passages (40-80), 4 documents (300+: cut at 256 tokens)."""
    words = [
        "the",
        "shipment",
        "of",
        "parts",
        "arrived",
        "late",
        "because",
        "the",
        "storm",
        "closed",
        "every",
        "road",
        "north",
    ]

    def text(n: int, seed: int) -> str:
        return " ".join(words[(seed + i) % len(words)] for i in range(n))

    batches = []
    for b in range(count):
        sizes = [5 + (b + i) % 11 for i in range(48)] + [
            40 + (b * 7 + i * 3) % 41 for i in range(12)
        ]
        sizes += [300 + i for i in range(4)]
        batches.append([text(n, b + i) for i, n in enumerate(sizes)])
    return batches


def one_group(lengths: list[int]) -> list[list[int]]:
    return [list(range(len(lengths)))]


def rate(encoder: OnnxSentenceEncoder, batches: list[list[str]]) -> float:
    encoder.encode(batches[0])  # warm-up
    started = time.perf_counter()
    for batch in batches:
        encoder.encode(batch)
    return sum(len(b) for b in batches) / (time.perf_counter() - started)


def _agreement(encoder: OnnxSentenceEncoder, batch: list[str]) -> float:
    """Worst cosine between a text's grouped and padded vector (int8 moves with padding)."""
    grouped = encoder.encode(batch)[0]
    encoder.grouping = one_group  # type: ignore[method-assign]
    padded = encoder.encode(batch)[0]
    del encoder.grouping
    return float(np.sum(unit_rows(grouped) * unit_rows(padded), axis=1).min())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    minilm = minilm_dir()
    root = Path(tempfile.mkdtemp(prefix="corral-lengths-")) / "onnx"
    encoders: dict[str, OnnxSentenceEncoder] = {}
    for name, engine in (("openvino-int8", "openvino"), ("onnxruntime-int8", "onnxruntime")):
        options = ExportOptions("embed", "int8", engine=engine)
        opened: Callable[[Path], OnnxSentenceEncoder] = lambda f, e=engine: OnnxSentenceEncoder(  # noqa: E731
            f, minilm, "cpu", 2, e
        )
        encoders[name], _ = exported_model(minilm, options, root, name, opened)
    batches = mixed_batches(args.batches)
    got: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for name, encoder in encoders.items() if r % 2 == 0 else reversed(encoders.items()):
            for grouping, how in ((one_group, "padded"), (None, "grouped")):
                if grouping is not None:
                    encoder.grouping = grouping  # type: ignore[method-assign]
                else:
                    del encoder.grouping  # the class's: length_groups
                got.setdefault(f"{name} {how}", []).append(rate(encoder, batches))
    medians = {k: statistics.median(v) for k, v in got.items()}
    print(medians)
    agreement = {name: _agreement(encoder, batches[0]) for name, encoder in encoders.items()}
    rows = [
        "| encoder | one padded batch | grouped by length | ratio | worst cosine, grouped vs padded |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in encoders:
        padded, grouped = medians[f"{name} padded"], medians[f"{name} grouped"]
        rows.append(
            f"| {name} | {padded:.0f}/s | {grouped:.0f}/s | **{grouped / padded:.2f}x** | "
            f"{agreement[name]:.4f} |"
        )
    write_section(
        "embed_lengths",
        f"""
## Mixed-length batches (`bench/embed_lengths.py`)

Batches of {BATCH} texts: 48 queries (5-15 words), 12 passages (40-80 words), 4 documents
(300+ words, cut at 256 tokens); all-MiniLM-L6-v2 as `runtime: auto` (OpenVINO int8) and
`runtime: onnx, quantize: int8` serve it, called directly (no HTTP); {machine()}; texts/s,
medians of {args.rounds} alternating rounds. "One padded batch" pads every text to the
longest (what a plain batched `encode` does); "grouped" runs texts of similar length
together (`length_groups`: a group's padded tokens at most 1.25x its real ones).

{chr(10).join(rows)}
""",
    )


if __name__ == "__main__":
    main()
