"""One scene of a multi-scene run, as every worker does it: skip when complete, else classify and write.

:class:`ArchiveJob` is what all scenes of a run share (the model pair, its digests, the settings, the
output folder); it is small and picklable, so Dask sends it to the workers as it is.
:func:`process_scene` is the one per-scene code path, for the serial loop and for Dask workers alike:
it consults the record (:mod:`rfmml.runtime.scene_record`), classifies with this process's
:class:`Classifier` for the job (loaded once per process, :func:`job_classifier`), writes the outputs
with :func:`rfmml.runtime.outputs.write_scene_outputs` (all or nothing) and then the record, and returns
a :class:`SceneOutcome`: ok, skipped or failed with a one-line reason. A failed scene never stops the
others; with ``RFMML_DEBUG=1`` an internal error (a bug, not bad input) is raised instead, traceback
and all.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rfmml.runtime.cli_shell import debug_enabled, one_line, os_error_message
from rfmml.runtime.errors import ArtifactError, RfmmlError
from rfmml.runtime.output_files import path_text
from rfmml.runtime.scene_record import class_map_path, complete_record, forget_record, write_record

if TYPE_CHECKING:
    from rfmml.runtime.classifier import Classifier

OK, SKIPPED, FAILED = "ok", "skipped", "failed"


@dataclass(frozen=True)
class ArchiveJob:
    """The settings every scene of one run shares; paths absolute (workers may run elsewhere)."""

    model: Path
    head_file: Path
    model_sha256: str
    head_sha256: str
    out_dir: Path
    head: str = "proto"
    providers: str = "auto"
    threads: int = 0
    batch: int = 64
    top_k: int = 3
    tile: int | None = None
    stride: int | None = None
    bands: tuple[int, int, int] | None = None
    zero_collar: bool = True

    def made_by(self) -> dict[str, Any]:
        """What the record compares: the pair's digests and the settings that change the outputs
        (not batch, threads or providers, which change only the speed)."""
        return {
            "model_sha256": self.model_sha256,
            "head_sha256": self.head_sha256,
            "head": self.head,
            "tile": self.tile,
            "stride": self.stride,
            "bands": list(self.bands) if self.bands is not None else None,
            "zero_collar": self.zero_collar,
            "top_k": self.top_k,
        }


@dataclass(frozen=True)
class SceneOutcome:
    """What became of one scene: ``status`` ok / skipped (already complete) / failed (``reason``, one
    line); ``tiles`` of its grid; ``seconds`` spent on it here; ``class_map`` its map (None when
    failed); ``pid`` and ``process_loads`` the process that did it and how many times that process has
    loaded the job's model (1: loaded once, reused for every later scene)."""

    scene: Path
    status: str
    reason: str = ""
    tiles: int = 0
    seconds: float = 0.0
    class_map: Path | None = None
    pid: int = 0
    process_loads: int = 0


# This process's classifiers: (job settings that make a session) -> Classifier, and loads per key.
_CLASSIFIERS: dict[tuple, Classifier] = {}
_LOADS: dict[tuple, int] = {}
_LOCK = threading.Lock()  # a Dask worker with several threads: one load, shared by all of them
MAX_CACHED = 2  # sessions kept per process (a worker serving two runs at once keeps both)


def _session_key(job: ArchiveJob) -> tuple:
    return (str(job.model), job.model_sha256, str(job.head_file), job.head_sha256, job.head,
            job.providers, job.threads)  # fmt: skip


def job_classifier(job: ArchiveJob) -> tuple[Classifier, int]:
    """This process's Classifier for ``job`` (loaded on first use, then reused) and the number of
    times this process has loaded it. Refuses a model file that changed since the run began."""
    key = _session_key(job)
    with _LOCK:
        if key not in _CLASSIFIERS:
            _CLASSIFIERS[key] = _load(job)
            _LOADS[key] = _LOADS.get(key, 0) + 1
            while len(_CLASSIFIERS) > MAX_CACHED:  # the oldest first (dicts keep insertion order)
                _CLASSIFIERS.pop(next(iter(_CLASSIFIERS)))
        return _CLASSIFIERS[key], _LOADS[key]


def _load(job: ArchiveJob) -> Classifier:
    from rfmml.runtime.artifact import sha256_file
    from rfmml.runtime.classifier import Classifier

    if sha256_file(job.model) != job.model_sha256:
        raise ArtifactError(f"{path_text(job.model)} changed since this run started; run it again")
    return Classifier.load(job.model, job.head_file, head=job.head, providers=job.providers,
                           threads=job.threads)  # fmt: skip


def session_loads() -> int:
    """Model loads this process has done for multi-scene jobs (a worker's counter, for checks)."""
    return sum(_LOADS.values())


def _classify_and_write(job: ArchiveJob, scene: Path) -> tuple[int, Path, int]:
    """Classify ``scene``, write its outputs and then its record; (tiles, class map, process loads)."""
    from rfmml.runtime.outputs import write_scene_outputs

    clf, loads = job_classifier(job)
    forget_record(scene, job.out_dir)  # from here until the new record exists, the scene is not complete
    result = clf.classify_scene(scene, tile=job.tile, stride=job.stride, batch=job.batch, top_k=job.top_k,
                                bands=job.bands, zero_collar=job.zero_collar)  # fmt: skip
    out = class_map_path(scene, job.out_dir, result.georeferenced)
    written = write_scene_outputs(result, out)
    files = [written.class_map, written.csv]
    aux = written.class_map.with_name(written.class_map.name + ".aux.xml")
    if written.class_map.suffix != ".png" and aux.is_file():
        files.insert(1, aux)
    write_record(scene, job.out_dir, job.made_by(), files, result.grid.n_tiles, result.seconds)
    return result.grid.n_tiles, written.class_map, loads


def process_scene(scene: Path, job: ArchiveJob) -> SceneOutcome:
    """Do one scene of ``job`` (module docstring); never raises for a failed scene (except a bug with
    RFMML_DEBUG=1). Runs in the calling process: the serial loop, or a Dask worker."""
    start = time.perf_counter()
    scene = Path(scene)
    try:
        record = complete_record(scene, job.out_dir, job.made_by())
        if record is not None:
            return SceneOutcome(scene, SKIPPED, tiles=record["tiles"], pid=os.getpid(),
                                class_map=job.out_dir / record["class_map"],
                                seconds=time.perf_counter() - start)  # fmt: skip
        tiles, class_map, loads = _classify_and_write(job, scene)
    except OSError as error:  # unreadable scene, unwritable or full output folder
        return _failed(scene, os_error_message(error), start)
    except (RfmmlError, MemoryError) as error:
        return _failed(scene, one_line(str(error)) or type(error).__name__, start)
    except Exception as error:  # a bug on one scene: report it, let the others finish
        if debug_enabled():
            raise
        what = f"{type(error).__name__}: {one_line(str(error))}"
        reason = f"internal error: {what} (RFMML_DEBUG=1 for the traceback)"
        return _failed(scene, reason, start)
    return SceneOutcome(scene, OK, tiles=tiles, seconds=time.perf_counter() - start, class_map=class_map,
                        pid=os.getpid(), process_loads=loads)  # fmt: skip


def _failed(scene: Path, reason: str, start: float) -> SceneOutcome:
    reason = reason.removeprefix(f"{path_text(scene)}: ")  # the outcome names the scene already
    return SceneOutcome(scene, FAILED, reason=reason, seconds=time.perf_counter() - start, pid=os.getpid())
