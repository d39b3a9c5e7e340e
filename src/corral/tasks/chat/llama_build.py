"""What the installed llama.cpp build can do, and the load settings that keep it safe.

pip builds llama-cpp-python from source for the CPU it runs on. On a CPU with AMX
(Intel Sapphire Rapids and later) that build repacks quantised weights into AMX tiles at
load, and the first decode then segfaults in ``ggml_backend_amx_mul_mat`` (llama.cpp
issue 20824; dspy's CI dropped the AMX variant for the same crash). Loading without
"extra buffer types" (llama.cpp's ``--no-repack``) keeps the weights in their plain
layout and the model runs. llama-cpp-python's ``Llama`` takes no argument for that
field, so it is set on the default model parameters for the duration of one load.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from types import ModuleType

__all__ = ["build_has_amx", "repack_weights", "weight_layout"]

# ``Llama`` reads ``llama_model_default_params`` while it loads; loads that change it
# take turns so no other load sees the changed value
_DEFAULT_PARAMS_LOCK = threading.Lock()
log = logging.getLogger("corral.experts")


def build_has_amx(llama_cpp: ModuleType) -> bool:
    """Whether the installed libllama was compiled with AMX int8 kernels."""
    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


def repack_weights(llama_cpp: ModuleType, requested: bool | None, *, model: str) -> bool:
    """The ``repack`` option in effect: the config's choice, else on except on AMX builds."""
    if requested is not None:
        return requested
    if not build_has_amx(llama_cpp):
        return True
    log.info(
        "%s: this llama.cpp build has AMX int8 kernels, which crash on the first decode "
        "(llama.cpp issue 20824): its weights load without repacking "
        "(options.repack: true turns it back on)",
        model,
    )
    return False


@contextlib.contextmanager
def weight_layout(llama_cpp: ModuleType, *, repack: bool) -> Iterator[None]:
    """Within this block, ``llama_cpp.Llama`` loads with weight repacking on or off."""
    if repack:
        yield
        return
    bindings = llama_cpp.llama_cpp  # the module ``Llama`` calls the C API through
    with _DEFAULT_PARAMS_LOCK:
        default_params = bindings.llama_model_default_params

        def plain_layout_params() -> object:
            params = default_params()
            params.use_extra_bufts = False
            return params

        bindings.llama_model_default_params = plain_layout_params
        try:
            yield
        finally:
            bindings.llama_model_default_params = default_params
