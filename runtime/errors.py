"""The errors every rfmml command reports as one line and exit code 2 (see ``cli_shell``).

One hierarchy: :class:`RfmmlError` is "the user can act on this" (bad input, a missing file, a model and
head that do not belong together). Anything else that escapes a command is an internal error (exit 1).
The subclasses say where the problem lies; all derive from ``ValueError`` too, so code written against
``ValueError`` still catches them.
"""

from __future__ import annotations

from pathlib import Path


class RfmmlError(ValueError):
    """A failure the user can fix; ``str(error)`` is one actionable line."""


class InputError(RfmmlError):
    """Bad input: flags, data folders, split files, run folders."""


class ArtifactError(RfmmlError):
    """A missing, corrupt or mismatched model/head pair."""


class SceneError(RfmmlError):
    """A scene that cannot be opened or read."""


class CheckpointError(RfmmlError):
    """A missing, unreadable or incompatible training checkpoint."""


class ExportError(RfmmlError):
    """The export cannot proceed (including parity beyond tolerance)."""


class OutputError(RfmmlError):
    """An output that cannot be written (unwritable folder, full disk); the previous one is kept."""


class ImageReadError(RfmmlError):
    """A file that cannot be decoded as an image; ``reason`` is one line for the user."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
