"""Ctrl-C (or SIGTERM, which the stages treat alike) during training takes effect between optimizer steps.

A KeyboardInterrupt can land between any two bytecodes: after `optimizer.step()` but before the step
counter moves, or halfway through the end of an epoch. The checkpoint saved on the way out would then
hold weights one step ahead of its counters, and the resumed run would replay a batch. So while training
runs, the first Ctrl-C only raises a flag, and the loops raise KeyboardInterrupt at their safe points
(`check()`: before a batch starts, inside read-only validation). A second Ctrl-C stops at once; what was
trained since the last checkpoint is then dropped, since its state may be torn (`torn`).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DeferredInterrupt:
    """Context manager that holds SIGINT and SIGTERM until the next `check()`; inert outside the main thread.

    Only a signal that would raise KeyboardInterrupt anyway is taken over: one a parent set to be
    ignored (a background job's SIGINT) stays ignored.
    """

    def __init__(self) -> None:
        self.pending = False
        self.torn = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                if signal.getsignal(number) is signal.default_int_handler:
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.pending:
            self.torn = True
            raise KeyboardInterrupt
        self.pending = True
        print("\nstopping after this step (Ctrl-C again to stop at once and lose the steps since the last "
              "checkpoint)", file=sys.stderr, flush=True)

    def check(self) -> None:
        """A safe point: raise the KeyboardInterrupt held since Ctrl-C, if any."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt
