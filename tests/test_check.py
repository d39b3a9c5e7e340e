"""`corral check examples/seed.yaml` on a machine with no Hub, no Ollama and an empty
cache: none of the ten founding experts can serve, each for its own stated reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.cli import main

from ._server import _free_port

ROOT = Path(__file__).resolve().parents[1]


def test_check_seed_says_why_each_expert_cannot_serve(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hub, ollama = f"http://127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", hub)  # closed ports: the same answer on any machine
    monkeypatch.setenv("OLLAMA_HOST", ollama)
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["check", str(ROOT / "examples" / "seed.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    cache = tmp_path / "hub"
    no_hub = f"not in the Hugging Face cache, and {hub} is unreachable (ConnectError)"

    def pullable(repo: str, files: str = "") -> str:
        return f"  remedy: `corral pull` (or `hf download {repo}{files}`) on a machine with Hub access, or set `path:` to a local copy"

    expected = [
        f"fast (qwen3:8b): upstream unreachable: Ollama at http://{ollama} is unreachable (ConnectError); is `ollama serve` running?",
        "  remedy: start Ollama (`ollama serve`), then `corral pull` has it pull qwen3:8b",
        f"powerful (qwen3:32b): upstream unreachable: Ollama at http://{ollama} is unreachable (ConnectError); is `ollama serve` running?",
        "  remedy: start Ollama (`ollama serve`), then `corral pull` has it pull qwen3:32b",
        f"embedder (nomic-ai/modernbert-embed-base): not on disk: {no_hub}",
        f"  looked in: Hugging Face cache {cache}/models--nomic-ai--modernbert-embed-base",
        pullable("nomic-ai/modernbert-embed-base"),
        f"reranker (cross-encoder/ms-marco-MiniLM-L-6-v2): not on disk: {no_hub}",
        pullable("cross-encoder/ms-marco-MiniLM-L-6-v2"),
        f"classifier (facebook/bart-large-mnli): not on disk: {no_hub}",
        pullable("facebook/bart-large-mnli"),
        f"forecaster (amazon/chronos-t5-base): not on disk: {no_hub}",
        pullable("amazon/chronos-t5-base"),
        "detector (ultralytics/yolov12n): not on disk: no weights on disk, and none on the Hub to fetch",
        "  remedy: Ultralytics publishes YOLO12 as PyTorch weights only (no ONNX on the Hub); export once: "
        "`pip install ultralytics && yolo export model=yolo12n.pt format=onnx imgsz=640`, then set `path:` to yolo12n.onnx",
        f"coder (deepseek-ai/deepseek-coder-6.7b-instruct): not on disk: {no_hub}",
        f"  looked in: Hugging Face cache {cache}/models--TheBloke--deepseek-coder-6.7B-instruct-GGUF",
        pullable("TheBloke/deepseek-coder-6.7B-instruct-GGUF", " --include '*Q4_K_M*.gguf'"),
        "  note: llama.cpp serves only GGUF and deepseek-ai publishes safetensors: corral fetches one quantisation "
        "(options.quant, default Q4_K_M) from TheBloke/deepseek-coder-6.7B-instruct-GGUF (bartowski and others publish GGUFs too)",
        f"doc-parser (microsoft/layoutlmv3-base): not on disk: {no_hub}",
        pullable("microsoft/layoutlmv3-base"),
        "  note: the base checkpoint is pre-trained only: it has no KEY/VALUE head, so corral pairs fields by its layout "
        "rules; for learned pairs set `path:` to a checkpoint fine-tuned for key/value tags (e.g. on FUNSD)",
        "anomaly-detector (alibaba-damo/genad): stand-in: GenAD has no public weights (none on the Hub or elsewhere); "
        "corral's reconstruction-error autoencoder, fitted over HTTP, stands in for it",
        "  remedy: set `model: corral/autoencoder` to name what serves",
        "config is valid; 0 of 10 experts can serve now (not yet: 2 upstream unreachable, 7 not on disk); "
        "1 served by a stand-in model. `corral serve` starts with what can serve and answers the rest with 503.",
    ]
    missing = [line for line in expected if line not in lines]
    assert not missing, "\n".join(missing)
    assert main(["check", str(ROOT / "examples" / "seed.yaml"), "--strict"]) == 1


def test_check_reports_a_missing_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A backend whose libraries do not import is reported with the extra to install
    (here a module blocked from importing, as on an install without `corral[graph]`)."""
    import sys

    monkeypatch.setitem(sys.modules, "torch_geometric", None)  # import now raises ImportError
    config = tmp_path / "graph.yaml"
    config.write_text("models:\n  - name: gnn\n    model: pyg/GraphSAGE\n")
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["check", str(config), "--strict"]) == 1
    out = capsys.readouterr().out
    assert (
        "gnn (pyg/GraphSAGE): needs an extra: backend torch-geometric needs torch_geometric, "
        "which do not import here"
    ) in out
    assert "  remedy: pip install 'corral[graph]'" in out
