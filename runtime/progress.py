"""A tiny progress display (no tqdm in the runtime): ``label done/total unit (pct) rate unit/s ETA``.

On a terminal a bar and that line are rewritten in place (carriage return), at most every ``interval``
seconds: ``classifying [#####---------------] 250/1000 tiles (25%) 812.3 tiles/s ETA 1s``.
Elsewhere (a log file, a pipe, CI) a few plain lines keep the log readable: one each time another
``log_step`` of the total is done (every 10 % by default) and one at the end; with an unknown total,
one every ``log_interval`` seconds. Used by ``rfmml-infer`` and the trainer alike.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 20  # characters of the bar drawn on a terminal


class Progress:
    """Counts work items and shows them (see the module docstring). ``enabled=False``: every call is a
    no-op. ``reset`` starts a new phase (a new total and label) on the same display."""

    def __init__(
        self,
        total: int | None = None,
        label: str = "",
        unit: str = "tiles",
        stream: TextIO | None = None,
        enabled: bool = True,
        interval: float = 0.25,
        log_interval: float = 30.0,
        log_step: float = 0.1,
    ) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interval = interval
        self.log_interval = log_interval
        self.log_step = log_step
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.reset(total)

    def reset(self, total: int | None, label: str | None = None) -> None:
        """Start counting again from 0 towards ``total`` (None: unknown)."""
        self.total = total
        if label is not None:
            self.label = label
        self.done = 0
        self.start = self._last = time.perf_counter()
        self._logged_steps = 0

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
        if self.total and self.tty:
            filled = min(BAR_WIDTH, BAR_WIDTH * self.done // self.total)
            parts.append("[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]")
        if self.total:
            pct = 100.0 * self.done / self.total
            parts.append(f"{self.done}/{self.total} {self.unit} ({pct:.0f}%)")
        else:
            parts.append(f"{self.done} {self.unit}")
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {(self.total - self.done) / rate:.0f}s")
        return " ".join(parts)

    def _due(self, now: float) -> bool:
        """Whether to draw now: by time on a terminal (or with no total), by steps of the total in logs."""
        if self.tty or not self.total:
            return now - self._last >= (self.interval if self.tty else self.log_interval)
        steps = self.done * round(1 / self.log_step) // self.total if self.log_step > 0 else 0
        if steps > self._logged_steps and self.done < self.total:
            self._logged_steps = steps
            return True
        return False

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._due(now):
            self._last = now
            self._draw(end="")

    def _draw(self, end: str) -> None:
        if self.tty:
            self.stream.write("\r" + self.text() + "\x1b[K" + end)
        else:
            self.stream.write(self.text() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(end="\n")
