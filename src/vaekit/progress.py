"""Progress of a long loop, shown the right way for where it goes.

On a terminal a tqdm bar redraws itself with ``\\r``; in a log file (a batch job, ``2> log``) that
writes a line fragment every few milliseconds (the digits preset left 155 KB of them) while nothing at
all was shown before when the bar was turned off there. So :func:`reporter` gives a tqdm bar for a TTY
and, for any other stream, plain lines ``desc: done/total unit (pct%), rate, ETA`` at most one every
``every_s`` seconds of the clock, plus one last line when the loop ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

LINE_EVERY_S = 10.0  # at most one plain line per this many seconds (plus the last)


class Reporter(Protocol):
    """What a loop calls: ``update`` after each piece of work, ``set_postfix`` for running numbers."""

    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, **values: Any) -> None: ...

    def close(self) -> None: ...

    @property
    def disable(self) -> bool: ...


class NoProgress:
    """Shows nothing (progress turned off, ``--quiet``, or not the main rank)."""

    disable = True

    def update(self, n: int = 1) -> None:
        """Nothing to show."""

    def set_postfix(self, **values: Any) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to show."""


def _duration(seconds: float) -> str:
    """``1:02:03`` or ``02:03``: a duration for a reader."""
    s = max(int(round(seconds)), 0)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _amount(x: float) -> str:
    """1234567 -> ``1.23M``: counts of samples are large."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(x) >= limit:
            return f"{x / limit:.3g}{suffix}"
    return f"{x:.0f}" if abs(x) >= 10 or float(x).is_integer() else f"{x:.3g}"


class LineProgress:
    """Plain, periodic progress lines for a stream that is not a terminal: no ``\\r``, each line whole."""

    disable = False

    def __init__(self, total: int, desc: str, unit: str, stream: TextIO, initial: int = 0,
                 every_s: float = LINE_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.every_s, self.clock = every_s, clock
        self.start_n = self.n = initial
        self.started = self.last_line = clock()
        self.shown_n = initial
        self.postfix = ""
        self.closed = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more; write a line if ``every_s`` has passed since the last one."""
        self.n += n
        if self.clock() - self.last_line >= self.every_s:
            self._line()

    def set_postfix(self, **values: Any) -> None:
        """Running numbers (loss, ...) shown at the end of the next line."""
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        """The last line (unless the last line written already showed this count)."""
        if not self.closed and self.n != self.shown_n:
            self._line()
        self.closed = True

    def _line(self) -> None:
        now = self.clock()
        elapsed = now - self.started
        done = self.n - self.start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        parts = [f"{self.desc}: {_amount(self.n)}/{_amount(self.total)} {self.unit}s{pct}",
                 f"{_amount(rate)} {self.unit}s/s" if rate else f"elapsed {_duration(elapsed)}"]
        left = self.total - self.n
        if left <= 0:
            parts.append(f"done in {_duration(elapsed)}")
        elif rate:
            parts.append(f"ETA {_duration(left / rate)}")
        else:
            parts.append("ETA unknown")
        if self.postfix:
            parts.append(self.postfix)
        print(", ".join(parts), file=self.stream, flush=True)
        self.last_line, self.shown_n = now, self.n


def reporter(total: int, desc: str, unit: str = "it", enabled: bool = True, stream: TextIO | None = None,
             initial: int = 0, leave: bool = True, clock: Callable[[], float] = time.monotonic,
             every_s: float = LINE_EVERY_S) -> Reporter:
    """The progress display for ``stream`` (stderr by default): a tqdm bar on a terminal, plain
    periodic lines with an ETA elsewhere, nothing when ``enabled`` is false."""
    if not enabled:
        return NoProgress()
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=unit != "it",
                    leave=leave, file=stream)
    return LineProgress(total, desc, unit, stream, initial=initial, every_s=every_s, clock=clock)


__all__ = ["LINE_EVERY_S", "LineProgress", "NoProgress", "Reporter", "reporter"]
