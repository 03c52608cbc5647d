"""A tiny progress line (no tqdm in the runtime): ``label done/total (pct) rate unit/s ETA``."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts work items and redraws one status line at most every ``interval`` seconds.

    On a terminal the line is rewritten in place (carriage return); elsewhere (logs, pipes) a new line
    is printed at most every ``log_interval`` seconds. ``enabled=False`` makes every call a no-op.
    """

    def __init__(
        self,
        total: int | None = None,
        label: str = "",
        unit: str = "tiles",
        stream: TextIO | None = None,
        enabled: bool = True,
        interval: float = 0.25,
        log_interval: float = 10.0,
    ) -> None:
        self.total = total
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done = 0
        self.start = time.perf_counter()
        self._last = self.start
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._interval = interval if self._tty else log_interval
        self._drawn = False

    def reset(self, total: int | None, label: str | None = None) -> None:
        self.total = total
        if label is not None:
            self.label = label
        self.done = 0
        self.start = self._last = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        """Items per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def text(self) -> str:
        rate = self.rate
        parts = [self.label] if self.label else []
        if self.total:
            pct = 100.0 * self.done / self.total
            parts.append(f"{self.done}/{self.total} {self.unit} ({pct:.0f}%)")
        else:
            parts.append(f"{self.done} {self.unit}")
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {(self.total - self.done) / rate:.0f}s")
        return " ".join(parts)

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and now - self._last >= self._interval:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        if self._tty:
            self.stream.write("\r" + self.text() + "\x1b[K")
        else:
            self.stream.write(self.text() + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Draw the final state and end the line."""
        if not self.enabled:
            return
        if self._tty:
            self.stream.write("\r" + self.text() + "\x1b[K\n")
        else:
            self.stream.write(self.text() + "\n")
        self.stream.flush()
