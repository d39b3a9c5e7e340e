"""A client that hangs up cancels its request, so its expert work stops too.

uvicorn does not cancel a request's handler when the client goes away: a client that
gave up on a 20-minute fit left the fit running. ``CancelOnDisconnect`` listens for
``http.disconnect`` once the request body is read and then cancels the handler; the
expert's batch stops at its next safe point (``corral.runtime.cancel``) and the
``corral_cancelled_batches`` metric counts it. A response already sent in full is
never cut short, and the app still sees the disconnect message if it asks (Starlette's
streaming responses listen for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CancelOnDisconnect"]

log = logging.getLogger("corral.server")
_DISCONNECT: Message = {"type": "http.disconnect"}


class CancelOnDisconnect:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gone = asyncio.Event()
        sent = False  # the whole response went out: nothing left to cancel
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            if not sent:
                log.info("client went away: cancelling %s %s", scope["method"], scope["path"])
                handler.cancel()

        async def body_then_watch() -> Message:
            nonlocal watcher
            if watcher is not None:  # the body is read: the watcher owns `receive` now
                await gone.wait()
                return _DISCONNECT
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                watcher = asyncio.create_task(watch())
            return message

        async def sending(message: Message) -> None:
            nonlocal sent
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                sent = True

        handler = asyncio.ensure_future(self.app(scope, body_then_watch, sending))
        try:
            await handler
        except asyncio.CancelledError:
            if not gone.is_set() or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise  # cancelled from outside (shutdown), not by the client leaving
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
