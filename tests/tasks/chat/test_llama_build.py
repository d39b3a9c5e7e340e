"""Weight repacking: off where the llama.cpp build has AMX int8 kernels (they segfault on the
first decode, llama.cpp issue 20824), and `options.repack` to choose it per model."""

from __future__ import annotations

import httpx
import pytest

from corral.config import parse_config
from corral.tasks.chat.llama_build import build_has_amx, repack_weights, weight_layout
from tests._server import serve

llama_cpp = pytest.importorskip("llama_cpp")


def test_the_plain_layout_lasts_only_for_the_load() -> None:
    defaults = llama_cpp.llama_cpp.llama_model_default_params
    with weight_layout(llama_cpp, repack=False):
        assert defaults().use_extra_bufts is True  # the saved original is untouched
        assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is False
    assert llama_cpp.llama_cpp.llama_model_default_params is defaults
    assert defaults().use_extra_bufts is True
    with weight_layout(llama_cpp, repack=True):
        assert llama_cpp.llama_cpp.llama_model_default_params is defaults


def test_the_config_decides_and_the_build_decides_otherwise() -> None:
    assert repack_weights(llama_cpp, True, model="fast") is True
    assert repack_weights(llama_cpp, False, model="fast") is False
    assert repack_weights(llama_cpp, None, model="fast") is not build_has_amx(llama_cpp)


def test_a_model_loaded_without_repacking_answers() -> None:
    config = parse_config("""
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    options: {repack: false}
""")
    with serve(config) as server:
        reply = httpx.post(
            server.v1 + "/chat/completions",
            json={
                "messages": [{"role": "user", "content": "What is 2 + 3? Answer with the number."}],
                "temperature": 0.0,
                "max_tokens": 24,
            },
            timeout=60,
        )
    assert reply.status_code == 200, reply.text
    assert "5" in reply.json()["choices"][0]["message"]["content"]
