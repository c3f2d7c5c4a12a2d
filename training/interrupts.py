"""Ctrl-C during training takes effect between optimizer steps, never inside one.

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


class DeferredInterrupt:
    """Context manager that holds SIGINT until the next `check()`; inert outside the main thread."""

    def __init__(self) -> None:
        self.pending = False
        self.torn = False
        self._previous = None

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

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
