"""The two servers ``request_overhead.py`` compares, one per process:

* ``bare PORT``: FastAPI on uvicorn's httptools, one ``/v1/embeddings`` route validating
  the same body with pydantic and writing a fixed 384-float vector with orjson: the
  floor any FastAPI service pays per request;
* ``corral PORT``: corral's own app and runtime serving ``tests/fakes.py``'s embedder
  (a hashed vector, no model), so what is measured is corral's request path alone.

No ``from __future__ import annotations`` here: FastAPI reads the bare route's body
model from its annotation, which is local to ``bare``.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bare(port: int) -> None:
    import numpy as np
    import orjson
    import uvicorn
    from fastapi import FastAPI, Response
    from pydantic import BaseModel

    app = FastAPI()
    vector = np.random.default_rng(0).normal(size=384).astype(np.float32)

    class Body(BaseModel):
        model: str | None = None
        input: list[str] | str

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/v1/embeddings")
    async def embeddings(body: Body) -> Response:
        data = [{"object": "embedding", "index": 0, "embedding": vector}]
        reply = {"object": "list", "data": data, "model": body.model or "bare"}
        content = orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY)
        return Response(content, media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", log_level="warning")


def corral(port: int) -> None:
    sys.path.insert(0, str(ROOT))
    from corral import create_app
    from corral.config import parse_config
    from corral.runtime import Runtime
    from corral.server.serving import uvicorn_server
    from corral.tasks import register_family
    from tests.fakes import FAKES

    register_family(FAKES)
    model = {"name": "fake", "model": "fake", "task": "embed", "backend": "fake"}
    config = parse_config(json.dumps({"models": [{**model, "path": str(ROOT)}]}))
    app = create_app(config, Runtime(config))
    uvicorn_server(app, config.server, host="127.0.0.1", port=port, log_level="warning").run()


if __name__ == "__main__":
    {"bare": bare, "corral": corral}[sys.argv[1]](int(sys.argv[2]))
