"""Ctrl-C and SIGTERM are one request, "stop cleanly"; this is where code takes them over for a while.

Only a signal that would raise KeyboardInterrupt anyway is taken over: one a parent set to be ignored (a
background job's SIGINT) stays ignored. Signal handlers belong to the main thread, so elsewhere this is inert.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def sigterm_as_ctrl_c() -> None:
    """SIGTERM (`kill PID`, a scheduler's stop) raises KeyboardInterrupt, as Ctrl-C does."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


@contextmanager
def stops_handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """Inside the block, each stop signal that would raise KeyboardInterrupt calls `handler` instead."""
    taken = {}
    if threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            if signal.getsignal(number) is signal.default_int_handler:
                taken[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, previous in taken.items():
            signal.signal(number, previous)
