"""A run folder owned by one process: an exclusive lock, stale temp files, one-line write errors.

``RUN/.lock`` carries an exclusive ``fcntl.flock`` for as long as a run (or a resume) works in the
folder; it is taken before anything is written. The kernel drops the lock when the process ends, so
a lock file left by a crash (or kill -9) blocks nothing: only a live rfmml-train does. A second one
gets a one-line InputError naming the holder's pid, and writes nothing.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from rfmml.runtime.atomic_files import DEFAULT_TAG, remove_stale_temporaries
from rfmml.runtime.errors import InputError

LOCK_NAME = ".lock"
# The tag rfmml-train's atomic writes name their temporaries with (rfmml.runtime.atomic_files), which a
# kill leaves behind. Writers that pass no tag get atomic_write's default: a run folder holds those too.
TAG = "rfmml-train"
TEMPORARY_TAGS = (TAG, DEFAULT_TAG)


class RunWriteError(InputError):
    """The run folder cannot take a write (a full disk, a read-only or vanished folder)."""


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OSError while writing ``path`` into one line naming the file ("no space left on device
    while writing RUN/last.pt"); an atomic write leaves the previous file whole."""
    try:
        yield
    except OSError as error:
        reason = "no space left on device" if error.errno == errno.ENOSPC else (error.strerror or str(error))
        raise RunWriteError(f"{reason.lower()} while writing {path}") from None


class RunFolder:
    """The lock on a run folder, as a context manager (``with RunFolder(path): ...``).

    On entry the folder is created when needed and locked; temporaries left by killed writers are
    removed (``remove_stale_temporaries``: by their writer's pid, so a live one's are never touched).
    On exit the lock is released; a folder the run created and left holding nothing but the lock file
    (bad input found before the first write) is removed again, parents included.
    """

    def __init__(self, path: str | Path, say: Callable[[str], None] = print) -> None:
        self.path = Path(path)
        self.say = say
        self._fd: int | None = None
        self._created: list[Path] = []  # folders this run made, innermost first

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def __enter__(self) -> RunFolder:
        self._make_folders()
        try:
            self._fd = _lock(self.lock_path, self.path)
        except BaseException:
            self._remove_created()
            raise
        started = time.time()  # under the lock: every temporary of this process here is from before
        removed = sum(len(remove_stale_temporaries(self.path, tag, started)) for tag in TEMPORARY_TAGS)
        if removed:
            self.say(f"removed {removed} temporary file(s) left in {self.path} by an interrupted run")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is None:
            return
        try:
            untouched = [p.name for p in self.path.iterdir()] == [LOCK_NAME]
        except OSError:  # the folder went away under us: nothing to tidy
            untouched = False
        if untouched:  # bad input found before the first write: leave no trace
            self.lock_path.unlink()  # while still locked: a claimer that opened it sees the inode go
            self._remove_created()
        os.close(self._fd)  # releases the lock
        self._fd = None

    def _make_folders(self) -> None:
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        self._created = missing

    def _remove_created(self) -> None:
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:  # not empty (someone else's files): leave it
                return


def _lock(lock_path: Path, run_dir: Path) -> int:
    """Open and exclusively lock ``lock_path``; write our pid into it. InputError when held."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InputError(f"{run_dir} is in use by another rfmml-train (pid {holder})") from None
        try:  # the holder may have removed the file between our open and our lock: lock the new one
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    try:
        with writing(lock_path):  # a full disk takes an empty file, not its first byte
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        lock_path.unlink(missing_ok=True)  # while still locked, as in RunFolder.__exit__
        os.close(fd)
        raise
    return fd
