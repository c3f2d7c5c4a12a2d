"""Ctrl-C (or SIGTERM, which the stages treat alike) during training takes effect between optimizer steps.

A KeyboardInterrupt can land between any two bytecodes: after `optimizer.step()` but before the step
counter moves, or halfway through the end of an epoch. The checkpoint saved on the way out would then
hold weights one step ahead of its counters, and the resumed run would replay a batch. So while training
runs, the first Ctrl-C only raises a flag, and the loops raise KeyboardInterrupt at their safe points
(`check()`: before a batch starts, inside read-only validation). A second Ctrl-C stops at once; what was
trained since the last checkpoint is then dropped, since its state may be torn (`torn`).
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from types import FrameType, TracebackType

from common.stops import stops_handled_by


class DeferredInterrupt:
    """Context manager that holds SIGINT and SIGTERM until the next `check()` (see common.stops)."""

    def __init__(self) -> None:
        self.pending = False
        self.torn = False
        self._routing = ExitStack()

    def __enter__(self) -> DeferredInterrupt:
        self._routing.enter_context(stops_handled_by(self._handle))
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._routing.close()

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
