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
