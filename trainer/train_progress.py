"""Training progress on stderr: the runtime's one progress display
(:class:`rfmml.runtime.progress.Progress`: rewritten in place on a terminal, a plain line per 10 % in a
log), one line per phase, with a status note (loss, accuracy)."""

from __future__ import annotations

from typing import TextIO

from rfmml.runtime.progress import Progress


class TrainProgress(Progress):
    """``rfmml-train ret 120/80000 episodes (0%) 4.3 episodes/s ETA 18572s loss 0.532 acc 0.812``.
    ``enabled=False`` (``--no-progress``) prints nothing."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        super().__init__(total=None, label="rfmml-train", stream=stream, enabled=enabled)
        self.note = ""
        self.initial = 0  # items already done when the phase was (re)started: not in the rate

    def start_phase(self, name: str, total: int, done: int, unit: str) -> None:
        """Begin phase ``name`` of ``total`` items (``unit``), ``done`` of them already (a resume)."""
        self.reset(total, f"rfmml-train {name}")
        self.unit = unit
        self.done = self.initial = done
        self.note = ""

    @property
    def rate(self) -> float:
        """Items per second since the phase (re)started."""
        return (self.done - self.initial) / self.elapsed if self.elapsed > 0 else 0.0

    def abandon(self) -> None:
        """End a half-drawn terminal line (the run stops with a message of its own)."""
        if self.enabled and self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()

    def text(self) -> str:
        return f"{super().text()} {self.note}".rstrip()
