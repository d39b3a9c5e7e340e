"""Which repo files each backend fetches, and which cached snapshot a pinned revision loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.catalog import resolve
from corral.config import ModelConfig, RuntimeConfig
from corral.errors import CorralError
from corral.pull.files import select_files

ST_REPO = [
    "README.md", ".gitattributes", "config.json", "config_sentence_transformers.json",
    "modules.json", "sentence_bert_config.json", "tokenizer.json", "tokenizer_config.json",
    "vocab.txt", "special_tokens_map.json", "1_Pooling/config.json", "2_Normalize/config.json",
    "model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack",
    "onnx/model.onnx", "onnx/model_qint8_avx512.onnx", "openvino/openvino_model.xml",
    "training_args.bin",
]


def test_sentence_transformers_take_configs_modules_and_safetensors_only() -> None:
    files = select_files("sentence-transformers", ST_REPO, {}).files
    assert files == sorted([
        "config.json", "config_sentence_transformers.json", "modules.json",
        "sentence_bert_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
        "special_tokens_map.json", "1_Pooling/config.json", "2_Normalize/config.json",
        "model.safetensors",
    ])


def test_pickles_only_when_no_safetensors_and_no_module_folders_for_plain_models() -> None:
    old = ["config.json", "pytorch_model.bin", "vocab.txt", "1_Pooling/config.json"]
    assert select_files("cross-encoder", old, {}).files == sorted(old)
    assert select_files("chronos", old, {}).files == ["config.json", "pytorch_model.bin", "vocab.txt"]


def test_gguf_quantisation_is_picked_by_option_or_default() -> None:
    repo = [f"m.{q}.gguf" for q in ("Q2_K", "Q4_K_M", "Q8_0")] + ["mmproj-m.gguf", "README.md"]
    default = select_files("llama-cpp", repo, {})
    assert default.files == ["m.Q4_K_M.gguf"]
    assert default.note == "picked m.Q4_K_M.gguf (Q4_K_M, default quantisation) of 3 GGUF files"
    assert select_files("llama-cpp", repo, {"quant": "q8_0"}).files == ["m.Q8_0.gguf"]
    with pytest.raises(CorralError, match="no GGUF with quantisation 'Q5_K_M'"):
        select_files("llama-cpp", repo, {"quant": "Q5_K_M"})
    shards = [f"big-Q4_K_M-0000{i}-of-00002.gguf" for i in (1, 2)] + ["big-Q8_0.gguf"]
    assert select_files("llama-cpp", shards, {}).files == shards[:2]


def test_onnx_detectors_take_the_one_onnx() -> None:
    assert select_files("onnx-yolo", ["yolo.onnx", "metadata.yaml", "a/b.txt"], {}).files == [
        "metadata.yaml", "yolo.onnx",
    ]
    with pytest.raises(CorralError, match=r"set options\.file"):
        select_files("onnx-yolo", ["a.onnx", "b.onnx"], {})


def test_a_pinned_revision_loads_its_snapshot_and_never_another(tmp_path: Path) -> None:
    repo = tmp_path / "models--acme--enc"
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (repo / "refs" / "v2").write_text("b" * 40)
    env = {"HF_HUB_CACHE": str(tmp_path)}

    def path(revision: str | None) -> Path | None:
        spec = ModelConfig(name="m", model="acme/enc", task="embed", revision=revision)
        return resolve(spec, RuntimeConfig(), env).path

    assert path(None) == repo / "snapshots" / ("a" * 40)
    assert path("v2") == repo / "snapshots" / ("b" * 40)
    assert path("b" * 40) == repo / "snapshots" / ("b" * 40)
    assert path("v3") is None  # not fetched yet: not silently another version
