"""A dependency-free progress bar: loss, accuracy, img/s and ETA on one rewritten line (or one line per epoch
when stderr is not a terminal, so logs stay short)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def fmt_seconds(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    def __init__(
        self,
        total: int,
        desc: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        start: int = 0,
        later: int = 0,
    ):
        """`start`: steps of this bar already done (a resumed epoch); `later`: steps of the run after this bar, so
        the line also shows the whole run's ETA at this bar's pace (evaluation between epochs not included)."""
        self.total, self.desc, self.enabled = total, desc, enabled
        self.start, self.later = start, later
        self.stream = stream or sys.stderr
        self.tty = self.enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.n = start
        self.images = 0
        self.t0 = time.perf_counter()
        self.last_draw = 0.0
        self.stats = ""

    def update(self, images: int, loss: float | None = None, acc: float | None = None, force: bool = False) -> None:
        self.n += 1
        self.images += images
        now = time.perf_counter()
        if not self.tty or (now - self.last_draw < 0.25 and not force and self.n < self.total):
            return
        self.last_draw = now
        self._draw(now, loss, acc, end="")

    def _draw(self, now: float, loss: float | None, acc: float | None, end: str) -> None:
        elapsed = max(now - self.t0, 1e-9)
        rate = self.images / elapsed
        done_here = self.n - self.start  # the steps this bar timed (not a resumed epoch's earlier ones)
        per_step = elapsed / done_here if done_here > 0 else 0.0
        eta = per_step * (self.total - self.n)
        width = 24
        filled = int(width * self.n / max(1, self.total))
        bar = "=" * filled + (">" if filled < width else "") + " " * max(0, width - filled - 1)
        parts = [f"{self.desc} [{bar}] {self.n}/{self.total}"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if acc is not None:
            parts.append(f"acc {100 * acc:.1f}%")
        if self.images:  # a bar over models, not images (`cnnlab models`), has no rate to show
            parts.append(f"{rate:,.0f} img/s")
        parts.append(f"ETA {fmt_seconds(eta)}" if self.n < self.total else f"{fmt_seconds(elapsed)}")
        if self.later and per_step:
            parts.append(f"run ETA {fmt_seconds(per_step * (self.total - self.n + self.later))}")
        line = "  ".join(parts)
        self.stream.write(("\r" + line + "\x1b[K" + end) if self.tty else (line + end))
        self.stream.flush()

    def close(self, loss: float | None = None, acc: float | None = None, clear: bool = False) -> float:
        """Finish the line; returns images per second over this bar.

        `clear` erases a terminal's bar instead (and prints nothing elsewhere): for a wait before a table, whose
        output should not start with a finished bar.
        """
        now = time.perf_counter()
        if self.enabled and clear:
            if self.tty:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
        elif self.enabled:
            self._draw(now, loss, acc, end="\n")
        return self.images / max(now - self.t0, 1e-9)
