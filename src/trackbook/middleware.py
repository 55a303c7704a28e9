"""A pure ASGI middleware that adds headers to each HTTP answer as it starts."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadersMiddleware:
    """Subclasses say which headers an answer gets in `add_headers`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def add_headers(self, scope: Scope, headers: MutableHeaders) -> None:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.add_headers(scope, MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, sending)
