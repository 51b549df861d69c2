"""ASGI middleware in front of the routes: the request body's size and arrival time, clients
that go away mid-body, and the optional bearer token."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any, Callable

from fastapi import HTTPException
from starlette.requests import ClientDisconnect

log = logging.getLogger("mmie.serve")

__all__ = ["BodyLimitMiddleware", "TokenMiddleware", "send_json", "OPEN_PATHS"]

#: paths served without the bearer token: the page, its assets and the liveness check
OPEN_PATHS = ("/", "/health", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)


class _BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body is larger than the limit of {limit} bytes "
                              f"(max_body_bytes)")


class _BodyTimeout(HTTPException):
    def __init__(self, seconds: float):
        super().__init__(408, f"the request body did not arrive within {seconds:g} s "
                              f"(body_timeout_s)")


async def send_json(send, status: int, detail: Any, headers: list | None = None) -> None:
    """A complete JSON error response ``{"detail": ...}`` that closes the connection."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Reject bodies over ``max_bytes`` (at once on a ``Content-Length`` header, and while
    streaming for chunked bodies or a header that lies) and bodies that do not arrive within
    ``timeout_s`` (408). A client that disconnects before its body is complete is logged as
    one INFO line, not a traceback: there is nobody left to answer."""

    def __init__(self, app: Callable, max_bytes: int, timeout_s: float | None = 30.0):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length > self.max_bytes:
                    return await send_json(send, 413, _BodyTooLarge(self.max_bytes).detail)
        seen = 0
        started = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s if self.timeout_s else None

        async def limited_receive():
            nonlocal seen
            if deadline is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
                except (asyncio.TimeoutError, TimeoutError):
                    raise _BodyTimeout(self.timeout_s) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (_BodyTooLarge, _BodyTimeout) as e:  # raised outside the exception handlers
            if started:
                raise
            await send_json(send, e.status_code, e.detail)
        except ClientDisconnect:
            log.info("%s %s: the client disconnected before sending the whole body",
                     scope.get("method", ""), scope.get("path", ""))


class TokenMiddleware:
    """With a token set, every path but the page, its assets and ``/health`` needs
    ``Authorization: Bearer <token>`` (401 otherwise). Compared in constant time."""

    def __init__(self, app: Callable, token: str):
        self.app = app
        self.token = token.encode()

    def _open(self, path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self._open(scope.get("path", "")):
            return await self.app(scope, receive, send)
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, rest = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = rest.strip()
        if not secrets.compare_digest(given, self.token):
            return await send_json(send, 401, "missing or wrong bearer token: send the header "
                                   "'Authorization: Bearer <token>' (the token given to "
                                   "`mmie serve --token` or MMIE_TOKEN)",
                                   headers=[(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)
