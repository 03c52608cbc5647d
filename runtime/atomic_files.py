"""Atomic files: a file is either absent, the old one, or complete — never half written.

The one helper every writer uses (trainer checkpoints, split.json, eval.json, the image cache, export's
model and head, inference outputs): fill a temp file in the target's folder, give it the permissions an
ordinary ``open(path, "w")`` would, then ``os.replace`` it over the target. A leaf module (os and
tempfile only), so the trainer can import it without loading the rest of the runtime.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


@functools.cache
def umask_mode() -> int:
    """0o666 less the process umask: the mode an ordinary ``open(path, "w")`` would give (read once:
    reading the umask means setting it, so not on every write)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Create ``path`` all or nothing: ``write(tmp)`` fills a temp file in the same folder, which
    then gets ordinary permissions (mkstemp makes it 0600) and is renamed over ``path``.

    The temp file is named ``.<name>.<random>.tmp`` and removed when ``write`` fails.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`), synced to disk."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)
