"""HTTP server: the FastAPI app and its routes."""

from corral.server.app import create_app

__all__ = ["create_app"]
