"""In-process ASGI requests for the asgi middleware tests: send one, read the answer."""

from __future__ import annotations

from typing import Any

Message = dict[str, Any]


async def call(
    app: Any, headers: list[tuple[bytes, bytes]] | None = None, path: str = "/items/1"
) -> list[Message]:
    """One in-process HTTP GET through ``app``; the messages it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": headers or []}
    await app(scope, receive, send)
    return sent


def status(messages: list[Message]) -> int:
    return int(next(m["status"] for m in messages if m["type"] == "http.response.start"))


def headers(messages: list[Message]) -> dict[bytes, bytes]:
    start = next(m for m in messages if m["type"] == "http.response.start")
    return dict(start["headers"])
