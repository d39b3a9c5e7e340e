"""The ``server:`` block of a config: address and connections, input limits, API keys and
their rate limits, CORS."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsConfig(_Strict):
    """Input limits checked before any model runs (413 when exceeded)."""

    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_batch_items: int = Field(256, ge=1)
    max_embedding_inputs: int = Field(
        2048, ge=1, description="Texts one embeddings request may send (OpenAI's limit)."
    )
    max_text_chars: int = Field(32_768, ge=1)
    max_labels: int = Field(64, ge=1)
    max_series_length: int = Field(100_000, ge=1, description="Values in one forecast series.")
    max_horizon: int = Field(10_000, ge=1, description="Steps one forecast may ask for.")
    max_forecast_points: int = Field(
        200_000,
        ge=1,
        description="Work one forecast may ask: series x (values + horizon), summed.",
    )
    max_rows: int = Field(
        100_000, ge=1, le=1_000_000, description="Rows (or windows) one anomaly fit or score sends."
    )
    max_features: int = Field(
        1_000, ge=1, le=10_000, description="Features per anomaly row (or window length)."
    )
    max_graph_nodes: int = Field(
        100_000, ge=1, le=1_000_000, description="Nodes one graph fit (or prediction) sends."
    )
    max_graph_edges: int = Field(
        500_000, ge=1, le=5_000_000, description="Edges one graph fit (or prediction) sends."
    )
    max_graph_features: int = Field(
        1_024, ge=1, le=65_536, description="Features per graph node (or edge)."
    )
    max_streams: int = Field(
        1_000, ge=1, le=1_000_000, description="Anomaly stream windows kept; least recent dropped."
    )
    # images (/v1/detect, /v1/documents/extract) and uploads (/v1/files)
    max_image_pixels: int = Field(
        25_000_000,
        ge=1,
        le=89_478_485,  # Pillow's own decompression-bomb limit: never beyond it
        description="Pixels (width x height) one decoded image may have; checked from the "
        "header, before decoding.",
    )
    max_images: int = Field(64, ge=1, description="Images (or frames) in one request.")
    max_request_pixels: int = Field(
        100_000_000, ge=1, description="Pixels all the images of one request may have together."
    )
    max_file_bytes: int = Field(
        4 * 1024 * 1024, ge=1, description="Bytes one upload to /v1/files may have."
    )
    max_files: int = Field(256, ge=1, description="Uploads kept at once (oldest dropped first).")
    max_files_bytes: int = Field(
        256 * 1024 * 1024, ge=1, description="Bytes all kept uploads may take together."
    )
    file_ttl_s: float = Field(3600.0, gt=0, description="Seconds an upload is kept.")
    # documents (/v1/documents/extract); each page also counts against max_image_pixels
    max_pages: int = Field(50, ge=1, description="Pages one document request may read.")
    max_render_dpi: int = Field(
        300, ge=36, le=1200, description="Highest resolution a PDF page is rendered at."
    )
    max_fit_bytes: int = Field(
        1024**3,
        ge=1024,
        description="Memory one anomaly or graph fit may take, estimated before it runs.",
    )
    max_fit_work: int = Field(
        1_000_000_000,
        ge=1,
        description="Work one anomaly fit may ask: rows x features x epochs (epochs counts "
        "as 100, the autoencoder's default, when not given).",
    )


class RateLimitConfig(_Strict):
    """Token buckets per API key (per client address without keys): a minute's worth may
    be spent at once, then it refills steadily. Over either rate: 429 with Retry-After."""

    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(
        None, gt=0, description="Tokens read plus written by the experts that answered."
    )


class ApiKeyConfig(_Strict):
    """One client's key (or only its SHA-256, so the config holds no secret), the experts
    it may use (all when unset) and its own rate limit (else ``server.rate_limit``)."""

    key: str | None = Field(None, min_length=1)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)
    experts: list[str] | None = None
    rate_limit: RateLimitConfig | None = None
    role: Literal["user", "admin"] = Field(
        "user", description="admin: sees every key's files, models, traces and usage."
    )
    shared: bool = Field(
        False, description="Uses every key's files, detectors and graph models, not only its own."
    )

    @model_validator(mode="after")
    def _one_secret(self) -> ApiKeyConfig:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("give exactly one of `key` or `sha256` (see `corral key`)")
        return self


class ConnectionsConfig(_Strict):
    """What one connection may hold (uvicorn's own settings where it has them), so slow
    or idle clients cannot keep the server from serving others."""

    header_timeout_s: float = Field(
        10.0, gt=0, description="A request's headers must arrive within this; else closed."
    )
    body_timeout_s: float = Field(
        60.0, gt=0, description="A request's body must arrive within this; else 408."
    )
    keep_alive_s: float = Field(
        5.0, gt=0, description="An idle keep-alive connection is closed after this (uvicorn)."
    )
    max_per_client: int = Field(
        64, ge=1, description="Open connections one client address may hold; more: 503."
    )
    max_concurrency: int | None = Field(
        1000, ge=1, description="Connections plus requests at once, all clients (uvicorn); 503."
    )
    max_header_bytes: int = Field(
        64 * 1024, ge=1024, description="Bytes of one request's head; more: 431."
    )


class CorsConfig(_Strict):
    """Browser apps on other origins that may call the server (off when empty)."""

    allow_origins: list[str] = Field([], description='Origins such as "http://localhost:3000".')
    allow_methods: list[str] = ["GET", "POST", "DELETE", "OPTIONS"]
    allow_headers: list[str] = ["authorization", "content-type"]


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_keys: list[str | ApiKeyConfig] = Field(
        [], description="Keys as strings, 'sha256:<hex>', or objects with experts and limits."
    )
    rate_limit: RateLimitConfig = RateLimitConfig()
    limits: LimitsConfig = LimitsConfig()
    readiness: Literal["all", "any"] = Field(
        "all",
        description="all: /readyz is 503 while any configured expert is unavailable; any: "
        "200 once one expert is ready (partial deployments).",
    )
    connections: ConnectionsConfig = ConnectionsConfig()
    drain_s: float = Field(
        30.0, ge=0, le=3600, description="On SIGTERM: how long in-flight requests may finish."
    )
    cors: CorsConfig = CorsConfig()
    allowed_hosts: list[str] | None = Field(
        None,
        description="Host header names served (DNS-rebinding guard); default: server.host, "
        "localhost, 127.0.0.1, [::1] and the address a connection arrived on; '*' for any.",
    )

    @field_validator("api_keys")
    @classmethod
    def _hashed_keys(cls, keys: list[str | ApiKeyConfig]) -> list[str | ApiKeyConfig]:
        hashed = [k[7:] for k in keys if isinstance(k, str) and k.startswith("sha256:")]
        for digest in hashed:
            if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
                raise ValueError("a 'sha256:' key needs 64 hex digits after it")
        return keys
