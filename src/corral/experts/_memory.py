"""What a loaded model holds, as its framework reports it.

RSS growth around a load is a poor measure of what evicting the model gives back: it
counts library import memory that never goes away, and the allocator's reuse of freed
pages makes a reload look nearly free (a MiniLM reload measured 2 MiB). The frameworks
know better: torch's parameters and buffers, llama.cpp's tensor bytes plus its KV cache.
"""

from __future__ import annotations

from typing import Any

__all__ = ["llama_bytes", "torch_bytes"]


def torch_bytes(*modules: Any) -> int | None:
    """Bytes of the parameters and buffers of torch modules, each storage counted once
    (tied weights, and modules sharing a submodule); None if none is a module."""
    import torch

    found = [m for m in modules if isinstance(m, torch.nn.Module)]
    if not found:
        return None
    storages: dict[int, int] = {}
    for module in found:
        for tensor in (*module.parameters(), *module.buffers()):
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def llama_bytes(llm: Any) -> int:
    """llama.cpp's model tensors plus its f16 KV cache for the context it was given."""
    import llama_cpp

    return int(llama_cpp.llama_model_size(llm.model)) + llama_kv_bytes(llm)


def llama_kv_bytes(llm: Any) -> int:
    """One context's f16 KV cache:
    ``n_ctx x layers x kv_heads x head_dim x 2 (keys and values) x 2 bytes``."""
    metadata = llm.metadata
    arch = metadata.get("general.architecture", "llama")

    def value(key: str, default: int = 0) -> int:
        return int(metadata.get(f"{arch}.{key}", default))

    heads = value("attention.head_count", 1) or 1
    head_dim = value("attention.key_length") or value("embedding_length") // heads
    kv_heads = value("attention.head_count_kv", heads)
    return int(llm.n_ctx() * value("block_count") * kv_heads * head_dim * 2 * 2)
