"""One-call helpers for programs built on the runtime (e.g. ``rfmml-demo``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rfmml.runtime.outputs import write_class_map, write_quicklook, write_tile_csv
from rfmml.runtime.progress import Progress
from rfmml.runtime.scene import SceneResult


@dataclass(frozen=True)
class SceneOutputs:
    """Paths written for one scene (quicklook None when not asked for)."""

    class_map: Path
    csv: Path
    quicklook: Path | None


def write_scene_outputs(
    result: SceneResult,
    out: str | Path,
    csv: str | Path | None = None,
    quicklook: str | Path | None = None,
    quicklook_size: int = 1024,
) -> SceneOutputs:
    """Write the class map (``out``: .tif GeoTIFF or .png), the per-tile CSV (default ``out`` with .csv)
    and optionally a quick-look PNG."""
    out = Path(out)
    csv_path = Path(csv) if csv is not None else out.with_suffix(".csv")
    write_class_map(result, out)
    write_tile_csv(result, csv_path)
    look = write_quicklook(result, quicklook, max_side=quicklook_size) if quicklook is not None else None
    return SceneOutputs(out, csv_path, look)


def infer_scene(
    model: str | Path,
    scene: str | Path,
    out: str | Path,
    *,
    head: str = "proto",
    head_file: str | Path | None = None,
    tile: int | None = None,
    stride: int | None = None,
    batch: int = 64,
    providers: str = "auto",
    threads: int = 0,
    csv: str | Path | None = None,
    quicklook: str | Path | None = None,
    show_progress: bool = False,
) -> tuple[SceneResult, SceneOutputs]:
    """Load the pair, classify ``scene`` and write its outputs: what ``rfmml-infer MODEL SCENE`` does.

    Returns the SceneResult (class_map uint8 [rows, cols], 255 = skipped; per-tile scores; grid) and the
    written paths. Raises ArtifactError / SceneError (one-line messages) on bad input.
    """
    from rfmml.runtime.classifier import Classifier

    clf = Classifier.load(model, head_file, head=head, providers=providers, threads=threads)
    progress = Progress(label="classifying", enabled=show_progress)
    result = clf.classify_scene(scene, tile=tile, stride=stride, batch=batch, progress=progress)
    return result, write_scene_outputs(result, out, csv=csv, quicklook=quicklook)
