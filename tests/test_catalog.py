from __future__ import annotations

from pathlib import Path

import pytest

from corral.catalog import resolve
from corral.config import ModelConfig, RuntimeConfig, Task, load_config

ROOT = Path(__file__).resolve().parents[1]

SEED_EXPECTED = {
    "fast": (Task.CHAT, "ollama"),
    "powerful": (Task.CHAT, "ollama"),
    "embedder": (Task.EMBED, "sentence-transformers"),
    "reranker": (Task.RERANK, "cross-encoder"),
    "classifier": (Task.CLASSIFY, "nli"),
    "forecaster": (Task.FORECAST, "chronos"),
    "detector": (Task.DETECT, "onnx-yolo"),
    "coder": (Task.CHAT, "llama-cpp"),
    "doc-parser": (Task.DOCUMENT, "layoutlmv3"),
    "anomaly-detector": (Task.ANOMALY, "autoencoder"),
}


def test_all_founding_ids_resolve(tmp_path: Path) -> None:
    config = load_config(ROOT / "examples" / "seed.yaml")
    env = {"HF_HUB_CACHE": str(tmp_path), "OLLAMA_HOST": "10.0.0.5:11434"}
    for spec in config.models:
        r = resolve(spec, config.runtime, env)
        assert (r.task, r.backend) == SEED_EXPECTED[spec.name], spec.name
        if r.backend == "ollama":
            assert r.base_url == "http://10.0.0.5:11434" and r.found
        elif r.backend == "autoencoder":  # GenAD has no public weights: corral fits its own
            assert r.found and "reconstruction-error autoencoder" in r.note
        else:
            assert not r.found
            assert any(str(tmp_path) in place for place in r.looked)
            assert "path:" in r.hint
    coder = resolve(config.models[7], config.runtime, env)
    assert coder.role == "code"


def _spec(**kw) -> ModelConfig:  # type: ignore[no-untyped-def]
    return ModelConfig(name="m", **kw)


def test_explicit_path_wins_and_missing_path_is_reported(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text("[]")
    r = resolve(_spec(model="nomic-ai/modernbert-embed-base", path=tmp_path), RuntimeConfig(), {})
    assert r.path == tmp_path and r.looked == [f"path: {tmp_path}"]
    r = resolve(_spec(model="x/y", path=tmp_path / "nope", task="embed"), RuntimeConfig(), {})
    assert not r.found and "fix the path" in r.hint


def test_models_dir_and_env_models_dir(tmp_path: Path) -> None:
    target = tmp_path / "cross-encoder" / "ms-marco-MiniLM-L-6-v2"
    target.mkdir(parents=True)
    spec = _spec(model="cross-encoder/ms-marco-MiniLM-L-6-v2")
    assert resolve(spec, RuntimeConfig(models_dir=tmp_path), {}).path == target
    assert resolve(spec, RuntimeConfig(), {"CORRAL_MODELS_DIR": str(tmp_path)}).path == target


def test_package_shipped_models_resolve(minilm_path: Path) -> None:
    r = resolve(_spec(model="sentence-transformers/all-MiniLM-L6-v2"), RuntimeConfig(), {})
    assert r.path == minilm_path and (r.task, r.backend) == (Task.EMBED, "sentence-transformers")
    derived = resolve(
        _spec(model="sentence-transformers/all-MiniLM-L6-v2", task="rerank"), RuntimeConfig(), {}
    )
    assert derived.backend == "bi-encoder"
    ner = resolve(_spec(model="spacy/en_core_web_sm"), RuntimeConfig(), {})
    assert ner.found and (ner.path / "config.cfg").exists()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("config_json", "expected"),
    [
        (
            '{"architectures": ["BertForSequenceClassification"], "id2label": {"0": "LABEL_0"}}',
            (Task.RERANK, "cross-encoder"),
        ),
        (
            '{"architectures": ["BartForSequenceClassification"], '
            '"id2label": {"0": "contradiction", "1": "neutral", "2": "entailment"}}',
            (Task.CLASSIFY, "nli"),
        ),
        (
            '{"architectures": ["BertForSequenceClassification"], "id2label": {"0": "neg", "1": "pos"}}',
            (Task.CLASSIFY, "sequence-classification"),
        ),
        ('{"architectures": ["BertForTokenClassification"]}', (Task.NER, "token-classification")),
    ],
)
def test_unknown_ids_are_sniffed_from_files(tmp_path: Path, config_json: str, expected) -> None:
    (tmp_path / "config.json").write_text(config_json)
    r = resolve(_spec(model="acme/custom", path=tmp_path), RuntimeConfig(), {})
    assert (r.task, r.backend) == expected


def test_unknown_id_without_files_asks_for_task() -> None:
    r = resolve(_spec(model="acme/unknown"), RuntimeConfig(), {"HF_HUB_CACHE": "/nonexistent"})
    assert r.task is None and not r.found
