"""Where a scene's outputs go, and the record that says they are complete (so a rerun skips the scene).

Names (the single-scene default of ``rfmml-infer`` and every multi-scene run, Dask or not):
``<folder>/<stem>_classmap.tif`` (GeoTIFF, + ``.aux.xml``) when the scene is georeferenced and
rasterio is installed, else ``<stem>_classmap.png``; ``<stem>_classmap.csv`` (per-tile CSV); and, in
multi-scene runs, the record ``<stem>_classmap.done.json``.

"Complete" means: the record exists and parses; it was made by this model file and this head file
(their SHA-256), with the same head kind and the settings that change the outputs (tile, stride,
bands, zero collar, top-k); the scene file has the size and modification time it had then; and every
output it lists exists with the recorded size and SHA-256. The record is written last, atomically,
after the outputs were renamed into place; an old record is removed before a scene is redone, so a
run killed in between leaves no record and the next run redoes that scene.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rfmml.runtime.artifact import sha256_file
from rfmml.runtime.atomic_files import atomic_write_bytes
from rfmml.runtime.output_files import TAG, path_text
from rfmml.runtime.scene_io import have_rasterio

RECORD_FORMAT = "rfmml-scene-record"
RECORD_VERSION = 1
MAX_RECORD_BYTES = 1 << 20  # a record lists a handful of files; anything larger is not ours


def class_map_path(scene: Path, folder: Path, georeferenced: bool) -> Path:
    """The default class map of ``scene`` in ``folder``: GeoTIFF when it can carry the georeference."""
    suffix = ".tif" if (georeferenced and have_rasterio()) else ".png"
    return folder / f"{scene.stem}_classmap{suffix}"


def record_path(scene: Path, folder: Path) -> Path:
    """The record that marks ``scene``'s outputs in ``folder`` complete."""
    return folder / f"{scene.stem}_classmap.done.json"


def scene_identity(scene: Path) -> dict[str, int]:
    """Size and modification time (ns) of the scene file: a changed scene is redone (hashing a
    multi-GB scene on every rerun would cost more than the check saves)."""
    stat = scene.stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _file_entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_record(
    scene: Path, folder: Path, made_by: Mapping[str, Any], outputs: list[Path], tiles: int, seconds: float
) -> Path:
    """Write ``scene``'s record atomically (call it after its outputs are in place).

    ``made_by``: model and head digests, head kind and output settings (compared by
    :func:`complete_record`); ``outputs``: the files written, all in ``folder``, the class map first.
    """
    record = {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "scene": path_text(scene),
        "scene_file": scene_identity(scene),
        "made_by": dict(made_by),
        "class_map": outputs[0].name,
        "outputs": {path.name: _file_entry(path) for path in outputs},
        "tiles": tiles,
        "seconds": round(seconds, 3),
    }
    path = record_path(scene, folder)
    atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"), tag=TAG)
    return path


def _read(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable or not JSON: not complete
        return None
    ok = isinstance(record, dict) and record.get("format") == RECORD_FORMAT
    ok = ok and record.get("version") == RECORD_VERSION and isinstance(record.get("class_map"), str)
    ok = ok and isinstance(record.get("tiles"), int)
    return record if ok else None


def _outputs_intact(folder: Path, outputs: dict[str, Any]) -> bool:
    for name, entry in outputs.items():
        if Path(name).name != name:  # a record names files in its own folder, nothing else
            return False
        path = folder / name
        if not isinstance(entry, dict) or not path.is_file() or path.stat().st_size != entry.get("bytes"):
            return False
        if sha256_file(path) != entry.get("sha256"):
            return False
    return True


def complete_record(scene: Path, folder: Path, made_by: Mapping[str, Any]) -> dict[str, Any] | None:
    """``scene``'s record when its outputs in ``folder`` are complete (module docstring), else None."""
    record = _read(record_path(scene, folder))
    if record is None or record.get("made_by") != json.loads(json.dumps(dict(made_by))):
        return None
    try:
        if record.get("scene_file") != scene_identity(scene):
            return None
    except OSError:  # the scene is gone: processing it reports why
        return None
    outputs = record.get("outputs")
    if not isinstance(outputs, dict) or record["class_map"] not in outputs:
        return None
    return record if _outputs_intact(folder, outputs) else None


def forget_record(scene: Path, folder: Path) -> None:
    """Remove ``scene``'s record before its outputs are rewritten (see the module docstring)."""
    try:
        os.unlink(record_path(scene, folder))
    except FileNotFoundError:
        return
