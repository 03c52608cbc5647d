"""Many scenes in one run, in this process or fanned out over a Dask cluster; a summary at the end.

    from rfmml.runtime import classify_scenes
    summary = classify_scenes(["a.tif", "b.tif"], model="model.onnx", out_dir="maps/")   # this process
    summary = classify_scenes(paths, model="model.onnx", out_dir="maps/", client=Client("tcp://sched:8786"))
    print("\\n".join(summary.lines())); summary.failed   # [SceneOutcome] with one-line reasons

Both ways run the same per-scene code (:func:`rfmml.runtime.scene_job.process_scene`): the same output
names, the same skip rule (:mod:`rfmml.runtime.scene_record`: a scene whose outputs are complete for
this model, head and settings is skipped), the same outcomes. The pair is checked here, once, before
any scene is started (a bad model or head is one error, not one failure per scene). With a ``client``
(:mod:`rfmml.runtime.dask_scenes`; ``pip install "rfmml[dask]"``) each worker process loads the model
once and writes its scenes' outputs itself, so ``out_dir`` must be a folder every worker can write
(the same path on shared storage).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rfmml.runtime.cli_shell import EXIT_OK, EXIT_PARTIAL
from rfmml.runtime.errors import InputError
from rfmml.runtime.output_files import check_writable, path_text
from rfmml.runtime.scene_job import (
    FAILED,
    OK,
    SKIPPED,
    ArchiveJob,
    SceneOutcome,
    job_classifier,
    process_scene,
)


@dataclass(frozen=True)
class ArchiveSummary:
    """Outcomes of a multi-scene run, in input order; ``seconds`` of wall time; ``where`` it ran."""

    outcomes: tuple[SceneOutcome, ...]
    seconds: float
    where: str

    def with_status(self, status: str) -> list[SceneOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == status]

    @property
    def failed(self) -> list[SceneOutcome]:
        return self.with_status(FAILED)

    @property
    def exit_code(self) -> int:
        """0, or 3 (partial) when a scene failed: the others were finished."""
        return EXIT_PARTIAL if self.failed else EXIT_OK

    def lines(self) -> list[str]:
        """The summary for a log: counts, rate, then each failed scene with its reason."""
        done = self.with_status(OK)
        tiles = sum(outcome.tiles for outcome in done)
        rate = len(done) / self.seconds if self.seconds > 0 else float("nan")
        lines = [
            f"{len(self.outcomes)} scene(s) in {self.where}: {len(done)} classified, "
            f"{len(self.with_status(SKIPPED))} skipped (already complete), {len(self.failed)} failed",
            f"{tiles} tiles in {self.seconds:.2f} s ({rate:.2f} scenes/s)",
        ]
        lines += [f"  failed {path_text(o.scene)}: {o.reason}" for o in self.failed]
        return lines


def outcome_line(outcome: SceneOutcome, index: int, total: int) -> str:
    """One line per finished scene: ``[3/8] ok scene.tif: 1200 tiles, 2.1 s -> maps/scene_classmap.tif``."""
    head = f"[{index}/{total}] {outcome.status} {path_text(outcome.scene)}"
    if outcome.status == FAILED:
        return f"{head}: {outcome.reason}"
    target = path_text(outcome.class_map) if outcome.class_map is not None else "?"
    return f"{head}: {outcome.tiles} tiles, {outcome.seconds:.2f} s -> {target}"


def make_job(
    model: str | Path, out_dir: str | Path, *, head: str = "proto", head_file: str | Path | None = None,
    **settings: Any,
) -> ArchiveJob:  # fmt: skip
    """Check the pair (files, digest binding, head kind) and the output folder (created when missing,
    its parent must exist; must be writable) and return the run's job. ``settings``: the remaining
    :class:`ArchiveJob` fields (providers, threads, batch, top_k, tile, stride, bands, zero_collar)."""
    from rfmml.runtime.artifact import check_binding, default_head_path, load_head, sha256_file
    from rfmml.runtime.errors import ArtifactError
    from rfmml.runtime.heads import HeadScorer
    from rfmml.runtime.scene import _check_sizes

    _check_sizes(settings.get("batch", 64), settings.get("tile"), settings.get("stride"))
    model = Path(model).absolute()
    if not model.is_file():
        raise ArtifactError(f"model file not found: {path_text(model)}")
    head_path = Path(head_file).absolute() if head_file is not None else default_head_path(model)
    loaded = load_head(head_path)
    check_binding(model, loaded, head_path)
    HeadScorer(loaded, head)  # refuses an unknown kind, or svm on a head without one
    folder = Path(out_dir).absolute()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out must be a folder when classifying several scenes: {path_text(folder)}")
    if not folder.parent.is_dir():
        raise InputError(f"output folder's parent does not exist: {path_text(folder.parent)}")
    folder.mkdir(exist_ok=True)
    check_writable([folder / "probe"])
    return ArchiveJob(model=model, head_file=head_path, model_sha256=loaded.onnx_sha256,
                      head_sha256=sha256_file(head_path), out_dir=folder, head=head, **settings)  # fmt: skip


def check_scenes(paths: Iterable[str | Path]) -> list[Path]:
    """Absolute scene paths, refusing (one line) none, a missing file, a folder, a scene given twice,
    and two scenes with the same name stem (their outputs would share names)."""
    scenes = [Path(path).absolute() for path in paths]
    if not scenes:
        raise InputError("no scenes given")
    by_stem: dict[str, Path] = {}
    seen: set[Path] = set()
    for scene in scenes:
        if scene in seen:
            raise InputError(f"{path_text(scene)} is given twice")
        seen.add(scene)
        if not scene.exists():
            raise InputError(f"input not found: {path_text(scene)}")
        if scene.is_dir():
            raise InputError(f"{path_text(scene)} is a folder: a multi-scene run takes scene files")
        other = by_stem.setdefault(scene.stem, scene)
        if other != scene:
            raise InputError(
                f"{path_text(other)} and {path_text(scene)} would write the same outputs "
                f"({scene.stem}_classmap.*): rename one, or run them into different --out folders"
            )
    return scenes


def classify_scenes(
    paths: Iterable[str | Path],
    *,
    model: str | Path,
    out_dir: str | Path,
    head: str = "proto",
    head_file: str | Path | None = None,
    client: Any = None,
    report: Callable[[SceneOutcome, int, int], None] | None = None,
    **settings: Any,
) -> ArchiveSummary:
    """Classify every scene in ``paths`` into ``out_dir`` (module docstring) and return the summary.

    ``client``: a ``distributed.Client`` (scenes run on its workers) or None (this process, one after
    another). ``report(outcome, n_done, n_total)`` is called as each scene finishes. ``settings``:
    providers, threads, batch, top_k, tile, stride, bands, zero_collar (as ``rfmml-infer``).
    Raises ArtifactError / InputError / OutputError (one line) before any scene starts; a scene that
    fails later is an outcome with its reason, and the others go on.
    """
    scenes = check_scenes(paths)
    job = make_job(model, out_dir, head=head, head_file=head_file, **settings)
    start = time.perf_counter()
    if client is not None:
        from rfmml.runtime.dask_scenes import run_on_cluster, where

        outcomes = run_on_cluster(client, job, scenes, report)
        return ArchiveSummary(tuple(outcomes), time.perf_counter() - start, where(client))
    job_classifier(job)  # load once, before the first scene: a model that cannot load stops here
    outcomes = []
    for index, scene in enumerate(scenes, 1):
        outcomes.append(process_scene(scene, job))
        if report is not None:
            report(outcomes[-1], index, len(scenes))
    return ArchiveSummary(tuple(outcomes), time.perf_counter() - start, "this process")
