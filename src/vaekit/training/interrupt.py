"""Ctrl-C during training: the first one asks the loop to stop after the current step (so the
checkpoint written then is consistent and resumes exactly); a second one stops at once."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any


class StepInterrupt(KeyboardInterrupt):
    """Raised by the loop at a step boundary after Ctrl-C: the training state is consistent."""


class DeferredInterrupt:
    """Context manager that defers SIGINT to ``check()``; a no-op outside the main thread or
    where SIGINT is ignored (e.g. a background job)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:
                self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after this step to save a checkpoint (press again to stop at once)",
              file=sys.stderr)

    def check(self) -> None:
        """Raise StepInterrupt if Ctrl-C was pressed since the last step."""
        if self.requested:
            raise StepInterrupt
