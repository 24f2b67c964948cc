"""A load balancer on its own, in its own process, so a test can read its memory.

Usage: python balancer_child.py <listen port> <replica port>; prints "ready" when it listens.
"""

from __future__ import annotations

import asyncio
import sys

from mlkube.backends.local.proxy import Backend, Router, serve


async def main(port: int, replica_port: int) -> None:
    router = Router("child", hold_s=5)
    router.set_server_limits(max_body_bytes=1 << 30, request_timeout_s=30)
    router.configure([Backend("r", replica_port, 1)], {"r": 1.0})
    await serve(router, "127.0.0.1", port)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
