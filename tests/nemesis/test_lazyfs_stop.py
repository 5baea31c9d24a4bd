"""The power-loss filesystem's wait for the next request cannot miss a stop signal (issue 17).

The hang this replaces: the stop signal was delivered after the serving loop had checked for a
stop and before its blocking read of /dev/fuse entered the kernel, so the read waited for a
request that never came. Here the wait (``lazyfs.RequestSource``) runs in this process on a pipe
standing in for /dev/fuse (both are polled descriptors); a late "request" written by a timer
turns a missed stop into a failed assertion instead of a hung test.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from nemesis import lazyfs

# A missed stop is seen as this request, written this long after the test started.
LATE_REQUEST = b"late request: the stop was missed"
LATE_AFTER_S = 5.0


class Device:
    """A pipe in place of /dev/fuse: requests are what is written to it."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self._late = threading.Timer(LATE_AFTER_S, self.request, args=(LATE_REQUEST,))
        self._late.start()

    def request(self, data: bytes) -> None:
        if self.write_fd >= 0:
            os.write(self.write_fd, data)

    def hang_up(self) -> None:
        os.close(self.write_fd)
        self.write_fd = -1

    def close(self) -> None:
        self._late.cancel()
        self._late.join()
        os.close(self.read_fd)
        if self.write_fd >= 0:
            self.hang_up()


@pytest.fixture
def stop() -> Iterator[lazyfs.StopSignals]:
    signals = lazyfs.StopSignals()
    try:
        yield signals
    finally:
        signals.close()


@pytest.fixture
def device() -> Iterator[Device]:
    pipe = Device()
    try:
        yield pipe
    finally:
        pipe.close()


def test_a_stop_signal_handled_before_the_wait_ends_it_at_once(
    stop: lazyfs.StopSignals, device: Device
) -> None:
    # the window that hung: the handler has run, and only then does the loop start to wait
    os.kill(os.getpid(), signal.SIGUSR1)
    started = time.monotonic()
    assert lazyfs.RequestSource(device.read_fd, stop).next() is None
    assert time.monotonic() - started < 1.0
    assert stop.mode() == "power-loss"


def test_a_stop_signal_during_the_wait_ends_it(stop: lazyfs.StopSignals, device: Device) -> None:
    timer = threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGTERM))
    timer.start()
    started = time.monotonic()
    try:
        assert lazyfs.RequestSource(device.read_fd, stop).next() is None
    finally:
        timer.join()
    assert time.monotonic() - started < LATE_AFTER_S
    assert stop.mode() == "clean"


def test_requests_are_served_until_a_stop_which_wins_over_a_pending_one(
    stop: lazyfs.StopSignals, device: Device
) -> None:
    source = lazyfs.RequestSource(device.read_fd, stop)
    device.request(b"first")
    assert source.next() == b"first"
    assert stop.mode() is None
    device.request(b"second")
    os.kill(os.getpid(), signal.SIGUSR1)
    assert source.next() is None  # closing the real device aborts what was still queued


def test_the_first_stop_signal_decides_the_mode(stop: lazyfs.StopSignals) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert stop.mode() == "clean"
    assert stop.mode() == "clean"


def test_a_device_that_goes_away_ends_the_wait_without_a_stop(
    stop: lazyfs.StopSignals, device: Device
) -> None:
    device.hang_up()
    assert lazyfs.RequestSource(device.read_fd, stop).next() is None
    assert stop.mode() is None


def test_closing_puts_the_previous_handlers_and_wakeup_back() -> None:
    before = {sig: signal.getsignal(sig) for sig in lazyfs.STOP_SIGNALS}
    signals = lazyfs.StopSignals()
    assert all(signal.getsignal(sig) is not before[sig] for sig in lazyfs.STOP_SIGNALS)
    signals.close()
    assert {sig: signal.getsignal(sig) for sig in lazyfs.STOP_SIGNALS} == before
    assert signal.set_wakeup_fd(-1) == -1  # none was left installed
