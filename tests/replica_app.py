"""One replica of a service, in a process of its own: ``python tests/replica_app.py PORT NAME``.

Serves ``GET /whoami`` (its NAME) and ``GET /slow?seconds=S`` on 127.0.0.1:PORT with uvicorn
until killed: the EndpointGroup tests kill it for real (SIGKILL), not through a proxy.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any
from urllib.parse import parse_qs

import uvicorn


def app_for(name: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        query = parse_qs(scope.get("query_string", b"").decode())
        if scope["path"] == "/slow":
            await asyncio.sleep(float(query.get("seconds", ["0.05"])[0]))
        body = name.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


if __name__ == "__main__":
    port, name = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(app_for(name), host="127.0.0.1", port=port, log_level="warning")
