"""The trainer's user errors: the runtime's one hierarchy (``rfmml.runtime.errors``), re-exported."""

from __future__ import annotations

from rfmml.runtime.errors import CheckpointError, InputError, RfmmlError

__all__ = ["CheckpointError", "InputError", "RfmmlError"]
