"""``RUN/metrics.jsonl``: one JSON object per line, appended as training goes.

Records (the layout is fixed: tiny runs must log the same lines as earlier versions):
  {"kind": "episode", "phase", "episode", "K", "N", "queries", "queries_per_class", "loss", "accuracy",
   "seconds"}                                     every ``log_every`` episodes of an episodic phase
  {"kind": "epoch", "phase": "ce", "episode", "loss", "accuracy", "lr", "seconds"}   every epoch
  {"kind": "val", "phase", "episode", "val_overall", "val_majority", "val_minority", "seconds"}
"episode" is the step number in its phase's unit: an epoch for the cross-entropy phase "ce".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rfmml.runtime.atomic_files import atomic_write_bytes
from rfmml.runtime.errors import CheckpointError
from rfmml.trainer.run_folder import writing


class MetricsLog:
    """Append-only JSON lines; on resume, the records past the checkpoint are dropped first."""

    def __init__(self, path: Path, warn: Callable[[str], None]) -> None:
        self.path = path
        self.warn = warn

    def start(self) -> None:
        """An empty log (a new run)."""
        with writing(self.path):
            atomic_write_bytes(self.path, b"")

    def truncate_after(self, phase_names: list[str], phase_index: int, step: int) -> None:
        """Keep the records up to (phase ``phase_index``, step ``step``), the checkpoint's position.

        A torn last line (a crash or power loss in mid-write) is dropped with a warning; any other
        line that is not a record of these phases is a CheckpointError (the log does not fit last.pt).
        """
        if not self.path.is_file():
            return
        # "\n" only: a torn tail may hold any byte, and str.splitlines() would also split at \r, \x0b...
        lines = self.path.read_bytes().decode("utf-8", errors="replace").split("\n")
        if lines[-1] == "":  # the file ends with a complete line
            lines.pop()
        keep = []
        for number, line in enumerate(lines, 1):
            record = _parse(line)
            if record is None and number == len(lines):
                self.warn(f"{self.path}: dropped an incomplete last line (left by a crash)")
                break
            if record is None or record.get("phase") not in phase_names:
                raise CheckpointError(
                    f"{self.path}:{number}: not a metrics record of this run; the log is damaged "
                    "(move it aside to resume without it)"
                )
            if (phase_names.index(record["phase"]), record["episode"]) <= (phase_index, step):
                keep.append(line)
        with writing(self.path):
            atomic_write_bytes(self.path, "".join(k + "\n" for k in keep).encode())

    def write(self, record: dict[str, Any]) -> None:
        with writing(self.path), open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def _parse(line: str) -> dict[str, Any] | None:
    """The record on ``line``; None when it is not a JSON object with an integer "episode"."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("episode"), int):
        return None
    return record
