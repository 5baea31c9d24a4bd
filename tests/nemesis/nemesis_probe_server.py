"""A tiny real service for nemesis tests: answers every TCP connection with its wall clock.

Run under the wall-clock library by lockbench.daemon, it shows from the outside what a fault
did: a bumped clock in its answer, a pause as silence, a partition or a delay in connect times.
A timer thread ticks with ``time.sleep`` the whole time, and the answer carries its tick count: a
sleep that fails (as under libfaketime with a real monotonic clock) kills the server, so every
clock test also proves that a Python server that sleeps survives the clock nemesis.

Usage: python3 nemesis_probe_server.py HOST PORT
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

ticks = 0


def tick_forever() -> None:
    global ticks
    try:
        while True:
            time.sleep(0.05)
            ticks += 1
    except BaseException as exc:
        print(f"timer thread died: {exc!r}", file=sys.stderr, flush=True)
        os._exit(3)


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(f"{time.time():.6f} {ticks}\n".encode())
    await writer.drain()
    writer.close()


async def main(host: str, port: int) -> None:
    threading.Thread(target=tick_forever, name="ticker", daemon=True).start()
    server = await asyncio.start_server(answer, host, port, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
