"""A graceful stop: SIGTERM or Ctrl-C sets a flag, and the loop saves at the next step boundary and returns."""

from __future__ import annotations

import contextlib
import signal
from typing import Any


class StopRequest:
    """While active, SIGTERM and SIGINT are recorded in `.signal` instead of killing the process."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Outside the main thread handlers cannot be installed: no graceful stop there.
            with contextlib.suppress(ValueError):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means now
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def name(sig: int | None) -> str:
    return signal.Signals(sig).name if sig else "a peer process"
