"""A tiny real service for nemesis tests: answers every TCP connection with its wall clock.

Run under libfaketime by lockbench.daemon, it shows from the outside what a fault did: a
bumped clock in its answer, a pause as silence, a partition or a delay in connect times. Uses no
``time.sleep`` (it runs under libfaketime with a real monotonic clock).

Usage: python3 nemesis_probe_server.py HOST PORT
"""

from __future__ import annotations

import asyncio
import sys
import time


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(f"{time.time():.6f}\n".encode())
    await writer.drain()
    writer.close()


async def main(host: str, port: int) -> None:
    server = await asyncio.start_server(answer, host, port, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
