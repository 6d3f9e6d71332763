"""Progress bars: on a terminal a tqdm bar with loss, accuracy, img/s and ETA as its postfix; when stderr is not
a terminal, no bar and one summary line when the bar closes, so logs stay short (and tests can read them).

tqdm draws the bar; the figures (rate, ETA, the whole run's ETA) are computed here, from `time.perf_counter`,
so a terminal and a log show the same numbers and the one line a log gets does not depend on tqdm's format.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

# Right of the bar, only our own fields (tqdm's elapsed<remaining and it/s would repeat them, worse: it/s is not
# img/s). tqdm puts ", " before a non-empty postfix.
_BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{postfix}"
_REDRAW_S = 0.25  # at most four redraws a second: a tight loop must not spend its time drawing
_SILENCED = False  # set by silence(): no bar and no summary line in this process


def silence(on: bool = True) -> None:
    """No progress output anywhere in this process (`--no-progress`), also from the bars that library code draws
    for itself and no flag reaches: a cache build inside `cnnlab train`, the experiment runner's trials."""
    global _SILENCED
    _SILENCED = on


def fmt_seconds(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _columns(stream: TextIO) -> int | None:
    """The terminal's width; 0 when it reports none (then `$COLUMNS` or 80 is used); None without a descriptor."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    try:
        cols = os.get_terminal_size(fd).columns
    except OSError:
        cols = 0
    return cols


class Progress:
    def __init__(
        self,
        total: int,
        desc: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        start: int = 0,
        later: int = 0,
        summary: bool = True,
        delay: float = 0.0,
    ):
        """`start`: steps of this bar already done (a resumed epoch); `later`: steps of the run after this bar, so
        the line also shows the whole run's ETA at this bar's pace (evaluation between epochs not included).

        `summary=False` prints nothing when the stream is not a terminal: for bars a library draws around work
        whose callers already log it (the experiment runner's trials, a cache build), so logs gain no lines.
        `delay`: seconds before a terminal bar first appears; work that ends sooner leaves no trace at all.
        """
        self.total, self.desc, self.enabled = total, desc, enabled and not _SILENCED
        self.start, self.later = start, later
        self.stream = stream or sys.stderr
        self.tty = self.enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.summary = summary
        self.n = start
        self.images = 0
        self.t0 = time.perf_counter()
        self.delay = delay
        self.last_draw = 0.0
        self.eta: float | None = None  # the caller's own estimate (update's `eta`), else this bar's pace
        self.bar: Any = None  # the tqdm bar: made now, or at the first draw after `delay`
        self.closed = False
        self.loss: float | None = None  # the last figures update() was given
        self.acc: float | None = None
        if self.tty and delay <= 0:
            self._make_bar("")  # at once, before the first step (which may take a while: data, compilation)

    def update(
        self,
        images: int,
        loss: float | None = None,
        acc: float | None = None,
        force: bool = False,
        eta: float | None = None,
        steps: int = 1,
        desc: str | None = None,
    ) -> None:
        """`steps` steps (of `total`) done, holding `images` images (0 for a bar over other things: models, trials,
        configurations). A bar counting images passes steps=images.

        `eta`: seconds left, when the caller knows better than this bar's average step (trials of unequal cost).
        `loss`, `acc`: None keeps the last ones given (a caller that reads them only when due(), see there).
        `desc`: a new label (the step a multi-step job is at), drawn with the next redraw.
        """
        if desc is not None:
            self.desc = desc
            if self.bar is not None:
                self.bar.set_description_str(desc, refresh=False)
        self.n += steps
        self.images += images
        if eta is not None:
            self.eta = eta
        self.loss = self.loss if loss is None else loss
        self.acc = self.acc if acc is None else acc
        loss, acc = self.loss, self.acc
        now = time.perf_counter()
        if not self._redraws(now, self.n, force):
            return
        self.last_draw = now
        self._draw_tty(now, loss, acc)

    def _redraws(self, now: float, n: int, force: bool = False) -> bool:
        """Whether a terminal bar at step `n` redraws at `now`: after `delay`, then at most every _REDRAW_S (unless
        forced), and always at the last step."""
        if not self.tty or now - self.t0 < self.delay:
            return False
        return force or n >= self.total or now - self.last_draw >= _REDRAW_S

    def due(self, steps: int = 1) -> bool:
        """Whether update(steps=steps) will redraw: a caller whose figures cost something to read (a meter's means,
        which wait for the GPU) reads them only then, and passes None otherwise."""
        return self.tty and self._redraws(time.perf_counter(), self.n + steps)

    def _stats(self, now: float, loss: float | None, acc: float | None) -> list[str]:
        """The fields after the bar: loss, accuracy, img/s, ETA (elapsed once done) and the run's ETA."""
        elapsed = max(now - self.t0, 1e-9)
        rate = self.images / elapsed
        done_here = self.n - self.start  # the steps this bar timed (not a resumed epoch's earlier ones)
        per_step = elapsed / done_here if done_here > 0 else 0.0
        eta = per_step * (self.total - self.n) if self.eta is None else self.eta
        parts = []
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if acc is not None:
            parts.append(f"acc {100 * acc:.1f}%")
        if self.images:  # a bar over models, not images (`cnnlab models`), has no rate to show
            parts.append(f"{rate:,.0f} img/s")
        parts.append(f"ETA {fmt_seconds(eta)}" if self.n < self.total else f"{fmt_seconds(elapsed)}")
        if self.later and per_step:
            parts.append(f"run ETA {fmt_seconds(per_step * (self.total - self.n + self.later))}")
        return parts

    def _draw_tty(self, now: float, loss: float | None, acc: float | None) -> None:
        postfix = "  ".join(self._stats(now, loss, acc))
        if self.bar is None:
            self._make_bar(postfix)
            return
        self.bar.n = self.n  # tqdm's way to move a manual bar: set n, then refresh
        self.bar.set_postfix_str(postfix, refresh=True)

    def _make_bar(self, postfix: str) -> None:
        from tqdm import tqdm  # only a terminal needs it; a log never imports it

        # A terminal that reports its size: follow it (a narrow one trims the postfix, never wraps the line). One
        # that reports 0x0 (a pseudo-terminal nobody sized: `script`, some containers) would make tqdm draw nothing:
        # $COLUMNS or 80 then; a stream without a descriptor (a test's fake terminal): no width, no trimming.
        cols = _columns(self.stream)
        if cols:
            size: dict[str, Any] = {"dynamic_ncols": True}
        else:
            size = {"ncols": shutil.get_terminal_size().columns if cols == 0 else None, "nrows": 24}
        # miniters=1 and mininterval=0: tqdm draws when told to (refresh); the throttle is ours.
        self.bar = tqdm(
            total=self.total,
            initial=self.n,
            desc=self.desc,
            file=self.stream,
            bar_format=_BAR_FORMAT,
            **size,
            miniters=1,
            mininterval=0,
            postfix=postfix,  # the constructor draws the bar with it
            position=0,  # one bar at a time: a bar left open by an exception must not push the next one down
            leave=True,
        )

    def _line(self, now: float, loss: float | None, acc: float | None) -> str:
        """The one line a log gets (no terminal): the same fields, behind a fixed-width text bar."""
        width = 24
        filled = int(width * self.n / max(1, self.total))
        bar = "=" * filled + (">" if filled < width else "") + " " * max(0, width - filled - 1)
        return "  ".join([f"{self.desc} [{bar}] {self.n}/{self.total}", *self._stats(now, loss, acc)])

    def printer(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """`log`, made to erase a terminal bar before each line and redraw it after: a line printed over the
        bar would otherwise be mixed with it (stdout and stderr share the terminal)."""

        def write(line: str) -> None:
            if self.bar is None or self.closed:
                log(line)
                return
            self.bar.clear()
            log(line)
            self.bar.refresh()

        return write

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # also on an error: the bar ends its line, so the error message starts on its own

    def close(self, loss: float | None = None, acc: float | None = None, clear: bool = False) -> float:
        """Finish the line; returns images per second over this bar.

        `clear` erases a terminal's bar instead (and prints nothing elsewhere): for a wait before a table, whose
        output should not start with a finished bar.
        """
        now = time.perf_counter()
        rate = self.images / max(now - self.t0, 1e-9)
        loss = self.loss if loss is None else loss
        acc = self.acc if acc is None else acc
        if not self.enabled or self.closed:  # closed twice (`with` around an explicit close): one line, not two
            return rate
        if self.tty:
            if self.bar is None and not clear and now - self.t0 >= self.delay:
                self._draw_tty(now, loss, acc)  # a bar closed before its first redraw still shows its result
            if self.bar is not None:
                if clear:
                    self.bar.leave = False  # tqdm then erases the bar instead of leaving it and a newline
                else:
                    self.bar.n = self.n
                    self.bar.set_postfix_str("  ".join(self._stats(now, loss, acc)), refresh=False)
                self.bar.close()
        elif not clear and self.summary:
            self.stream.write(self._line(now, loss, acc) + "\n")
            self.stream.flush()
        self.closed = True
        return rate
