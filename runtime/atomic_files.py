"""Atomic files: a file is either absent, the old one, or complete — never half written.

The one mechanism every writer uses (trainer checkpoints, split.json, eval.json, the image cache,
export's model and head, inference outputs, enrolled heads):

- :func:`temporary_for`: the temporary a file is written to first, beside it (so the rename is atomic),
  named for who wrote it: ``.<name>.<tag>.<host>.<pid>-<n>.tmp``, ``tag`` the command (``rfmml-train``,
  ``rfmml-export``, ``rfmml-infer``, ``rfmml-enroll``; ``rfmml`` when a caller does not say), ``host``
  the writing machine (:func:`host_token`), ``pid`` the writing process, ``n`` a counter of this process.
- :func:`atomic_write`: fill such a temporary, give it the permissions an ordinary ``open(path, "w")``
  would, ``os.replace`` it over the target; the temporary is removed when writing fails.
- :func:`remove_stale_temporaries`: a kill -9 leaves temporaries behind; the next writer in that folder
  removes those of its tag whose process is gone, and only those: the names say which process wrote them.
  A pid means something only on its own host, so a temporary of another host (workers of several hosts
  writing into one shared folder) is never removed: its own host's next writer removes it. Temporaries
  of earlier versions, ``.<name>.<tag>.<pid>-<n>.tmp`` (no host), are judged by their pid on this host,
  as those versions did, so an upgrade still cleans what their killed runs left.

A leaf module (standard library only), so the trainer can import it without loading the rest of the
runtime.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import socket
import stat
import zlib
from collections.abc import Callable
from pathlib import Path

DEFAULT_TAG = "rfmml"
# A host as it appears in a name: the characters a tag may have, so names parse without ambiguity.
_HOST_CHAR = "A-Za-z0-9_-"
_HOST_MAX = 64  # Linux's HOST_NAME_MAX; longer names (other systems) are cut, with a digest
# A temporary of any tag (and host, absent in names of earlier versions), as the tail of a name: what
# a writer adds when it writes into a temporary of ours (export's head, written into export's own).
_ANY_TEMPORARY = rf"\.[{_HOST_CHAR}]+(?:\.[{_HOST_CHAR}]+)?\.\d+-\d+\.tmp"
# Files a library may write beside a temporary (GDAL's ``.aux.xml`` beside a raster it created).
_SIDECARS = (r"\.aux\.xml",)
_counter = itertools.count(1)


@functools.cache
def umask_mode() -> int:
    """0o666 less the process umask: the mode an ordinary ``open(path, "w")`` would give (read once:
    reading the umask means setting it, so not on every write)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def host_token() -> str:
    """This host as it appears in temporaries' names: ``socket.gethostname()`` when it has only
    ``[A-Za-z0-9_-]`` and at most 64 characters; otherwise its other characters as ``_``, cut to 55,
    plus ``-`` and the CRC-32 of the full name in 8 hex digits (so ``a.b`` and ``a_b`` stay two hosts).
    Never empty. Read on every call: a renamed host's own temporaries then look foreign (kept), never
    the reverse."""
    name = socket.gethostname()
    token = re.sub(f"[^{_HOST_CHAR}]", "_", name)
    if token == name and 0 < len(token) <= _HOST_MAX:
        return token
    digest = zlib.crc32(name.encode("utf-8", "surrogateescape"))
    return f"{token[: _HOST_MAX - 9]}-{digest:08x}"


def temporary_for(path: str | Path, tag: str = DEFAULT_TAG) -> Path:
    """The temporary ``path`` is written to first: ``.<name>.<tag>.<host>.<pid>-<n>.tmp`` in its folder
    (``host``: :func:`host_token`)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}.{host_token()}.{os.getpid()}-{next(_counter)}.tmp")


def atomic_write(path: str | Path, write: Callable[[Path], None], tag: str = DEFAULT_TAG) -> None:
    """Create ``path`` all or nothing: ``write(tmp)`` fills :func:`temporary_for` ``(path, tag)``
    (created empty and 0600 first), which then gets ordinary permissions and is renamed over ``path``.
    The temporary is removed when ``write`` fails; an OSError that names no file then names ``path``."""
    path = Path(path)
    tmp = _create_temporary(path, tag)
    try:
        write(tmp)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except OSError as error:
        if error.errno is None or error.filename is not None:
            raise
        # a failed write() says only "No space left on device": name the file it was for
        raise OSError(error.errno, error.strerror, os.fspath(path)) from error
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _create_temporary(path: Path, tag: str) -> Path:
    """Create a fresh, empty, 0600 temporary for ``path`` (a stale one of a reused pid is skipped)."""
    while True:
        tmp = temporary_for(path, tag)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        return tmp


def atomic_write_bytes(path: str | Path, data: bytes, tag: str = DEFAULT_TAG) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`), synced to disk."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write, tag)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` may still be writing: True for this process, a live one (another user's
    included) and anywhere liveness cannot be asked safely (not POSIX: never guess, never remove)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    if pid <= 0:  # 0 and negative numbers address process groups, never one writer
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OverflowError:  # not a possible pid
        return False
    return True


@functools.cache
def _stale_pattern(tag: str) -> re.Pattern[str]:
    """``.<name>.<tag>.<host>.<pid>-<n>.tmp`` (or, from earlier versions, without ``.<host>``), or that
    followed by a sidecar or by a temporary written into it."""
    tails = "|".join((*_SIDECARS, _ANY_TEMPORARY))
    host = rf"(?:\.(?P<host>[{_HOST_CHAR}]+))?"
    return re.compile(rf"^\..+?\.{re.escape(tag)}{host}\.(?P<pid>\d+)-\d+\.tmp(?:{tails})?$")


def remove_stale_temporaries(folder: str | Path, tag: str, started: float | None = None) -> list[Path]:
    """Remove the temporaries that killed ``tag`` writers left in ``folder``; return them.

    Stale: a regular file named like :func:`temporary_for` ``(…, tag)`` (or its sidecar, or a temporary
    written into it) by this host (or by an earlier version, whose names have no host) whose writing
    process no longer exists, or is this process (its pid reused after a restart) and the file predates
    ``started`` (``time.time()`` when this writer began; None: this process's temporaries are never
    stale). Another host's temporaries, a live writer's and every other file are left.
    """
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    pattern = _stale_pattern(tag)
    host = host_token()
    removed = []
    for name in names:
        match = pattern.match(name)
        if match is None or match["host"] not in (None, host):  # another host's pid says nothing here
            continue
        if _is_stale(folder / name, int(match["pid"]), started):
            try:
                (folder / name).unlink()
            except FileNotFoundError:  # another writer cleaned it first
                continue
            removed.append(folder / name)
    return removed


def _is_stale(path: Path, pid: int, started: float | None) -> bool:
    try:
        status = path.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(status.st_mode):  # a folder or a link is never one of our temporaries
        return False
    if pid == os.getpid():
        return started is not None and status.st_mtime < started
    return not process_alive(pid)
