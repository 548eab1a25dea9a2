"""FaultProxy: put Toxiproxy's faults between a client and a real TCP server.

Run: python examples/chaos_proxy.py [asyncio|trio]
"""

from __future__ import annotations

import sys
import time

import anyio
from anyio.abc import SocketStream

from asyncres.chaos import FaultProxy, LatencyToxic, ResetPeerToxic


async def echo(stream: SocketStream) -> None:
    """The 'server': sends back whatever it receives."""
    async with stream:
        try:
            while True:
                await stream.send(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass


async def ping(address: tuple[str, int]) -> str:
    """One connection, one round trip; how long it took or how it failed."""
    start = time.perf_counter()
    try:
        async with await anyio.connect_tcp(*address) as stream:
            await stream.send(b"ping")
            await stream.receive()
    except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
        return f"failed ({type(exc).__name__})"
    return f"{(time.perf_counter() - start) * 1000:.0f} ms"


async def main() -> None:
    server = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server_address = ("127.0.0.1", server.extra(anyio.abc.SocketAttribute.local_port))
    async with server, anyio.create_task_group() as tg:
        tg.start_soon(server.serve, echo)

        async with FaultProxy(upstream=server_address) as proxy:
            print("through the proxy:", await ping(proxy.address))

            latency = proxy.add(LatencyToxic(0.1, jitter=0.02))  # replies 80-120 ms late
            print("with latency:     ", await ping(proxy.address))
            latency.direction = "both"  # changed live
            print("both directions:  ", await ping(proxy.address))
            proxy.remove(latency)

            proxy.add(ResetPeerToxic(toxicity=1.0))  # RST on every new connection
            print("reset_peer:       ", await ping(proxy.address))
            proxy.clear()

            proxy.enabled = False  # down: refused
            print("down:             ", await ping(proxy.address))
            proxy.enabled = True
            print("up again:         ", await ping(proxy.address))
            print(proxy.statistics())
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
