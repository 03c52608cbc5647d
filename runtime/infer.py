"""What ``rfmml-infer MODEL SCENE`` does, as one call for programs built on the runtime (``rfmml-demo``).

result, written = infer_scene("model.onnx", "scene.tif", "classmap.tif", quicklook="look.png")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rfmml.runtime.outputs import SceneOutputs, check_class_map_path, write_scene_outputs
from rfmml.runtime.progress import Progress
from rfmml.runtime.scene import SceneResult


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
    truth: np.ndarray | None = None,
    show_progress: bool = False,
) -> tuple[SceneResult, SceneOutputs]:
    """Load the pair, classify ``scene`` and write its outputs (all or nothing).

    Returns the SceneResult (class_map uint8 [rows, cols], 255 = skipped; per-tile scores; grid) and the
    written paths. ``truth``: true class per grid cell, int [rows, cols], adds the quick-look's
    wrong-tiles panel. Raises ArtifactError / SceneError / InputError (one-line messages) on bad input.
    """
    from rfmml.runtime.classifier import Classifier

    check_class_map_path(out)  # before the work, not after it
    clf = Classifier.load(model, head_file, head=head, providers=providers, threads=threads)
    progress = Progress(label="classifying", enabled=show_progress)
    result = clf.classify_scene(scene, tile=tile, stride=stride, batch=batch, progress=progress)
    return result, write_scene_outputs(result, out, csv=csv, quicklook=quicklook, truth=truth)
