"""Checks that judge a case's result beyond its exit code: "wrong" results and "lost" outputs.

Each factory returns a :data:`fuzz_harness.Check`: a function of the :class:`Outcome` that returns
``(kind, reason)`` when something is wrong, else None. Outputs are read from disk after the run.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from fuzz_harness import Check, Outcome

PREVIOUS = b"previous output: must survive a failed run\n"
TEMP_MARKERS = (".tmp", ".partial", ".part", "~")


def read_csv_rows(text: str) -> list[dict[str, str]] | None:
    """Rows of a CSV (None when it does not parse or rows have different lengths)."""
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error:
        return None
    if not rows or any(len(row) != len(rows[0]) for row in rows):
        return None
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def _csv_text(source: Path | None, outcome: Outcome) -> str | None:
    if source is None:
        return outcome.stdout[outcome.stdout.find("path,") :] if "path," in outcome.stdout else None
    if not source.is_file():
        return None
    return source.read_bytes().decode("utf-8", "surrogateescape")


def _nan_scores(rows: list[dict[str, str]]) -> list[str]:
    bad = []
    for row in rows:
        for key, value in row.items():
            if key.endswith("score") and value and not math.isfinite(float(value)):
                bad.append(f"{key}={value}")
    return bad


def _complete_rows(out: Path | None, outcome: Outcome) -> list[dict[str, str]] | None:
    """The rows of a finished folder run's CSV (``out``, or stdout when None); None when it is missing
    or incomplete."""
    text = _csv_text(out, outcome)
    return read_csv_rows(text) if text is not None else None


def folder_csv(out: Path | None, classified: set[str], refused: set[str]) -> Check:
    """For an exit 0/3 folder run: a complete CSV (``out``, or stdout when None) without NaN scores,
    where every name in ``classified`` has a class and no name in ``refused`` has one."""

    def check(outcome: Outcome) -> tuple[str, str] | None:
        if outcome.code not in (0, 3):
            return None
        rows = _complete_rows(out, outcome)
        if rows is None:
            return ("lost", f"CSV missing or incomplete: {out or 'stdout'}")
        nan = _nan_scores(rows)
        if nan:
            return ("wrong", f"non-finite score {nan[0]}")
        named = {Path(row.get("path", "")).name: row.get("class", "") for row in rows}
        missing = sorted(name for name in classified if not named.get(name))
        if missing:
            return ("wrong", f"valid tile not classified: {missing[0]!r}")
        taken = sorted(name for name in refused if named.get(name))
        if taken:
            return ("wrong", f"undecodable file classified: {taken[0]!r}")
        return None

    return check


def folder_rows(out: Path, files: list[bytes]) -> Check:  # files: full paths, as the CSV writes them
    """Exit 0/3: the CSV has exactly one row per file, its path written as the runtime's documented
    lossless text (``rfmml.runtime.output_files.path_text``: UTF-8, other bytes as \\xNN escapes)."""
    from rfmml.runtime.output_files import path_text

    def check(outcome: Outcome) -> tuple[str, str] | None:
        if outcome.code not in (0, 3):
            return None
        rows = _complete_rows(out, outcome)
        if rows is None:
            return ("lost", f"CSV missing or incomplete: {out or 'stdout'}")
        if len(rows) != len(files):
            return ("wrong", f"{len(rows)} CSV rows for {len(files)} files")
        written = {row.get("path", "") for row in rows}
        missing = [name for name in files if path_text(name) not in written]
        return ("wrong", f"name not written losslessly: {missing[0]!r}") if missing else None

    return check


def previous_kept(paths: list[Path]) -> Check:
    """Outputs that held :data:`PREVIOUS` before the run: a failed run (exit 2) leaves them as they were."""

    def check(outcome: Outcome) -> tuple[str, str] | None:
        if outcome.code in (0, 3):
            return None
        for path in paths:
            if not path.is_file() or path.read_bytes() != PREVIOUS:
                return ("lost", f"previous output destroyed by a failed run: {path.name}")
        return None

    return check


def files_unchanged(paths: list[Path]) -> Check:
    """Files that must come through the run byte for byte (a finished run a bad command points at)."""
    before = {path: path.read_bytes() for path in paths}

    def check(_outcome: Outcome) -> tuple[str, str] | None:
        for path, data in before.items():
            if not path.is_file() or path.read_bytes() != data:
                return ("lost", f"{path.name} changed or removed")
        return None

    return check


def outputs_complete(csv_path: Path, map_path: Path) -> Check:
    """A successful scene run (exit 0): the class map and a complete tile CSV without NaN scores."""

    def check(outcome: Outcome) -> tuple[str, str] | None:
        if outcome.code != 0:
            return None
        if not map_path.is_file() or map_path.read_bytes() == PREVIOUS:
            return ("lost", f"exit 0 but no new class map: {map_path.name}")
        text = csv_path.read_text(encoding="utf-8") if csv_path.is_file() else None
        rows = read_csv_rows(text) if text is not None else None
        if not rows:
            return ("lost", f"exit 0 but tile CSV missing, empty or incomplete: {csv_path.name}")
        nan = _nan_scores(rows)
        return ("wrong", f"non-finite score {nan[0]}") if nan else None

    return check


def no_temp_files(folder: Path) -> Check:
    """No temporary or partial file left in ``folder`` after the run, whatever its exit code."""

    def check(_outcome: Outcome) -> tuple[str, str] | None:
        if not folder.is_dir():
            return None
        left = sorted(p.name for p in folder.iterdir() if p.name.endswith(TEMP_MARKERS))
        return ("lost", f"temporary file left: {left[0]}") if left else None

    return check


def marker_absent(marker: Path) -> Check:
    """The file a malicious pickle would create does not exist: no code ran."""

    def check(_outcome: Outcome) -> tuple[str, str] | None:
        return ("wrong", f"code from a pickle ran (created {marker.name})") if marker.exists() else None

    return check


def error_names(flag: str, value: str) -> Check:
    """Exit 2: the error line names the flag under test (or its value), so the case was refused for
    the reason it tests and not for another one."""
    names = {flag, flag.lstrip("-"), flag.lstrip("-").replace("-", "_")}

    def check(outcome: Outcome) -> tuple[str, str] | None:
        if outcome.code != 2:
            return None
        line = next((x for x in outcome.stderr.splitlines() if ": error:" in x), "")
        shown = [value, str(Path(value).parent)] if "/" in value else [value]  # a path or its folder
        if any(name and name in line for name in names) or any(v and v in line for v in shown):
            return None
        return ("wrong", f"refused, but the error names neither {flag} nor {value!r}")

    return check


def error_names_file_in(folder: Path) -> Check:
    """Exit 2: the error line names the file it could not write (a path inside ``folder``)."""

    def check(outcome: Outcome) -> tuple[str, str] | None:
        if outcome.code != 2:
            return None
        line = next((x for x in outcome.stderr.splitlines() if ": error:" in x), "")
        return (
            None if str(folder) in line else ("wrong", "the error does not name the file it could not write")
        )

    return check


def warned_if_accepted(flag: str) -> Check:
    """A value accepted (exit 0) only with a one-line warning naming ``flag`` (e.g. capped to the CPUs)."""

    def check(outcome: Outcome) -> tuple[str, str] | None:
        if outcome.code != 0:
            return None
        if any("warning" in line and flag in line for line in outcome.stderr.splitlines()):
            return None
        return ("wrong", f"{flag} value accepted without a warning")

    return check
