"""How ``rfmml-infer`` writes files: all or nothing, never destroying the previous outputs.

- :class:`StagedOutputs`: every output of a run (class map, its ``.aux.xml``, CSV, quick-look) is
  written to a temporary beside it, ``.<name>.rfmml-infer.<host>.<pid>-<n>.tmp`` (``atomic_files``'
  ``temporary_for``), synced, and only when all are complete renamed over the final names, together,
  at the end. A failure (a full disk, Ctrl-C, a
  bad input found late) removes the temporaries and leaves the previous outputs as they were. A
  ``kill -9`` before the renames leaves the previous outputs intact, plus temporaries. (The renames
  are one ``os.replace`` each, back to back: a kill between two of them, a window of microseconds,
  leaves some new and some previous outputs, every one of them complete.)
- Stale temporaries: the next run writing into that folder removes those temporaries (its own tag
  only, and only those of processes that no longer run: ``rfmml.runtime.atomic_files``).
- :func:`path_text`: a file name as text for the CSV and the console, losslessly. On POSIX a name is
  bytes; bytes that are not UTF-8 are written as ``\\xNN`` (two hex digits) and a backslash as ``\\\\``,
  so every name can be recovered exactly; other names are written as they are.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from rfmml.runtime.atomic_files import remove_stale_temporaries, temporary_for
from rfmml.runtime.errors import InputError, OutputError

TAG = "rfmml-infer"


def path_text(path: str | os.PathLike) -> str:
    """``path`` as printable UTF-8 text, losslessly (see the module docstring for the escapes)."""
    text = os.fsdecode(path)
    if os.sep != "/":  # Windows names are Unicode already, and backslash is the separator
        return text
    try:
        raw = text.replace("\\", "\\\\").encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that did not come from the file system
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def utf8_path(path: str | os.PathLike, why: str) -> str:
    """``path`` as a str that encodes to UTF-8, for libraries that need that (GDAL, onnxruntime);
    InputError (one line, ``why`` names the library) for a name that is not UTF-8."""
    text = os.fspath(path) if not isinstance(path, bytes) else os.fsdecode(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{path_text(text)}: {why} needs file names in UTF-8; rename it") from None
    return text


def check_writable(paths: list[Path]) -> None:
    """Create and remove a temporary in the folder of each path, before any work is done; OutputError
    (one line) for a folder that cannot take the outputs (missing, read-only, not a folder)."""
    for folder in dict.fromkeys(Path(path).parent for path in paths):
        probe = temporary_for(folder / "probe", TAG)
        try:
            probe.touch(exist_ok=False)
            probe.unlink()
        except OSError as error:
            reason = error.strerror or str(error)
            raise OutputError(f"cannot write in {path_text(folder)}: {reason}") from None


def _write_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "could not write" (rasterio's only when rasterio is in use)."""
    errors: list[type[BaseException]] = [OSError]
    rasterio_errors = sys.modules.get("rasterio.errors")
    if rasterio_errors is not None:
        errors.append(rasterio_errors.RasterioError)
    cpl = sys.modules.get("rasterio._err")
    if cpl is not None and hasattr(cpl, "CPLE_BaseError"):
        errors.append(cpl.CPLE_BaseError)
    return tuple(errors)


def _sidecar(path: Path) -> Path:
    """The ``.aux.xml`` GDAL may write beside a raster it created (ours is written separately)."""
    return path.with_name(path.name + ".aux.xml")


def _sync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


class StagedOutputs:
    """Outputs written to temporaries and renamed together when the ``with`` block ends without error.

    with StagedOutputs() as staged:
        staged.write(Path("map.png"), lambda tmp: image.save(tmp, format="PNG"))
        staged.write(Path("map.csv"), write_csv)
    # here both exist, complete; after an exception neither changed and no temporary is left
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []  # (temporary, final)
        self._cleaned: set[Path] = set()

    def write(self, final: str | Path, writer: Callable[[Path], None]) -> Path:
        """Run ``writer(temporary)`` for ``final``; OutputError (one line) when it cannot be written."""
        final = Path(final)
        folder = final.parent
        if folder not in self._cleaned:
            remove_stale_temporaries(folder, TAG)
            self._cleaned.add(folder)
        tmp = temporary_for(final, TAG)
        self._pending.append((tmp, final))
        try:
            writer(tmp)
            _sync(tmp)
        except _write_errors() as error:
            reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0]
            raise OutputError(f"cannot write {path_text(final)}: {reason}") from error
        return final

    def commit(self) -> None:
        """Rename every temporary over its final name (in the order written)."""
        while self._pending:
            tmp, final = self._pending[0]
            os.replace(tmp, final)
            self._pending.pop(0)
            _sidecar(tmp).unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove every temporary (and any sidecar a library wrote beside it)."""
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
            _sidecar(tmp).unlink(missing_ok=True)
        self._pending.clear()

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            try:
                self.commit()
            finally:
                self.discard()
        else:
            self.discard()
