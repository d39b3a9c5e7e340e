"""Tiny random-init models of the founding config's architectures, saved like hub checkpoints.

No hub is reachable here, so hub-loading code is exercised on these: same classes, same
files on disk, a few thousand parameters. They test plumbing (loading, batching, label
order, offsets), not quality.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    BartConfig,
    BartForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    ModernBertConfig,
    ModernBertModel,
)

_SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


def _save_tokenizer(minilm_path: Path, target: Path) -> int:
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path), local_files_only=True)
    tokenizer.save_pretrained(str(target))
    return int(tokenizer.vocab_size)


def cross_encoder(minilm_path: Path, target: Path) -> Path:
    """Like cross-encoder/ms-marco-MiniLM-L-6-v2: BERT with one relevance logit."""
    torch.manual_seed(0)
    vocab = _save_tokenizer(minilm_path, target)
    config = BertConfig(vocab_size=vocab, num_labels=1, **_SMALL)
    BertForSequenceClassification(config).save_pretrained(str(target))
    return target


def nli_bart(minilm_path: Path, target: Path) -> Path:
    """Like facebook/bart-large-mnli: BART for sequence classification with MNLI labels."""
    torch.manual_seed(1)
    vocab = _save_tokenizer(minilm_path, target)
    config = BartConfig(
        vocab_size=vocab,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=512,
        id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
        label2id={"contradiction": 0, "neutral": 1, "entailment": 2},
        # the BERT tokenizer's [PAD]/[CLS]/[SEP] play BART's pad/bos/eos
        pad_token_id=0,
        bos_token_id=101,
        eos_token_id=102,
        decoder_start_token_id=102,
        forced_eos_token_id=102,
    )
    BartForSequenceClassification(config).save_pretrained(str(target))
    return target


def sentiment(minilm_path: Path, target: Path) -> Path:
    """A fine-tuned-style classifier with its own fixed labels."""
    torch.manual_seed(2)
    vocab = _save_tokenizer(minilm_path, target)
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    config = BertConfig(
        vocab_size=vocab,
        num_labels=3,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        **_SMALL,
    )
    BertForSequenceClassification(config).save_pretrained(str(target))
    return target


def token_classifier(minilm_path: Path, target: Path) -> Path:
    """Like dslim/bert-base-NER: BERT token classification with BIO labels."""
    torch.manual_seed(3)
    vocab = _save_tokenizer(minilm_path, target)
    labels = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-ORG", 4: "I-ORG", 5: "B-LOC", 6: "I-LOC"}
    config = BertConfig(
        vocab_size=vocab,
        num_labels=len(labels),
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        **_SMALL,
    )
    BertForTokenClassification(config).save_pretrained(str(target))
    return target


def modernbert_embedder(minilm_path: Path, target: Path) -> Path:
    """Like nomic-ai/modernbert-embed-base: ModernBERT + mean pooling + normalize."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    torch.manual_seed(4)
    backbone = target / "backbone"
    vocab = _save_tokenizer(minilm_path, backbone)
    config = ModernBertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=101,
        eos_token_id=102,
        cls_token_id=101,
        sep_token_id=102,
    )
    ModernBertModel(config).save_pretrained(str(backbone))
    transformer = Transformer(str(backbone), max_seq_length=128)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu").save(str(target))
    return target


def as_hf_cache(cache: Path, repo_id: str, build, minilm_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """Save a tiny model in the Hugging Face hub cache layout (refs/main -> snapshot)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    build(minilm_path, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    return snapshot


def chronos_t5(target: Path) -> Path:
    """Like amazon/chronos-t5-base: a T5 whose config carries ``chronos_config`` (the mean
    scaling, uniform-bins tokenizer and sampling settings the Chronos pipeline reads)."""
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    n_tokens = 128
    config = T5Config(
        vocab_size=n_tokens,
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        architectures=["T5ForConditionalGeneration"],
    )
    config.chronos_config = {
        "tokenizer_class": "MeanScaleUniformBins",
        "tokenizer_kwargs": {"low_limit": -15.0, "high_limit": 15.0},
        "context_length": 64,
        "prediction_length": 16,
        "n_tokens": n_tokens,
        "n_special_tokens": 2,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "use_eos_token": True,
        "model_type": "seq2seq",
        "num_samples": 20,
        "temperature": 1.0,
        "top_k": 50,
        "top_p": 1.0,
    }
    T5ForConditionalGeneration(config).save_pretrained(str(target))
    return target


def tiny_gguf(target: Path, quant: str, values: int = 32) -> Path:
    """A GGUF file (header, metadata, one tensor of ``values`` floats), named like a hub
    quantisation: enough for download and file-choice tests; not a model llama.cpp runs."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(target), "llama")
    writer.add_name(f"tiny-coder {quant}")
    writer.add_string("corral.test.quantisation", quant)
    writer.add_tensor("token_embd.weight", np.full((values,), len(quant), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target
