"""The one atomic-write helper: all or nothing, and ordinary file permissions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rfmml.runtime.atomic_files import atomic_write, atomic_write_bytes, umask_mode


def test_written_files_get_the_umask_mode_not_0600(tmp_path: Path) -> None:
    target = tmp_path / "split.json"
    atomic_write_bytes(target, b"{}")
    assert target.read_bytes() == b"{}"
    assert os.stat(target).st_mode & 0o777 == umask_mode()
    assert umask_mode() == 0o666 & ~_current_umask()


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "best.pt"
    target.write_bytes(b"old")

    def failing(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_the_artifact_module_still_re_exports_the_helpers() -> None:
    import rfmml.runtime.artifact as artifact

    assert artifact.atomic_write is atomic_write and artifact.atomic_write_bytes is atomic_write_bytes


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
