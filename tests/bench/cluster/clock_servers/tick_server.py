"""A small Python server for the wall-clock library's tests.

Every tick it waits ~0.1 s with one of Python's waits in turn (time.sleep, threading waits, queue,
select, asyncio) and prints "<wait> <time.monotonic()> <time.time()> <datetime.now()>". Under the
library the wall readings carry the offset and the ticks keep their pace through any skew; a wait
that raises kills the server, as it killed a real server's timer thread under libfaketime. Stops
after argv[1] seconds."""

import asyncio
import contextlib
import datetime
import queue
import select
import sys
import threading
import time

STEP = 0.1
limit = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
condition = threading.Condition()
loop = asyncio.new_event_loop()


def wait_once(kind: int) -> str:
    if kind == 0:
        time.sleep(STEP)
        return "time.sleep"
    if kind == 1:
        threading.Event().wait(STEP)
        return "threading.Event.wait"
    if kind == 2:
        with condition:
            condition.wait(STEP)
        return "threading.Condition.wait"
    if kind == 3:
        with contextlib.suppress(queue.Empty):
            queue.Queue().get(timeout=STEP)
        return "queue.get"
    if kind == 4:
        select.select([], [], [], STEP)
        return "select"
    if kind == 5:
        lock = threading.Lock()
        lock.acquire()
        lock.acquire(timeout=STEP)
        return "threading.Lock.acquire"
    loop.run_until_complete(asyncio.sleep(STEP))
    return "asyncio.sleep"


start = time.monotonic()
tick = 0
while time.monotonic() - start < limit:
    kind = wait_once(tick % 7)
    print(
        kind,
        f"{time.monotonic():.6f}",
        f"{time.time():.6f}",
        f"{datetime.datetime.now().timestamp():.6f}",
        flush=True,
    )
    tick += 1
