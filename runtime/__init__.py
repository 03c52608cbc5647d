"""rfmml.runtime: classify aerial imagery with an exported rfmml pair (model.onnx + model.npz).

numpy + onnxruntime + Pillow (+ click for the CLI); rasterio only for GeoTIFF (``rfmml[geo]``).
Never imports torch.

    from rfmml.runtime import Classifier, write_scene_outputs
    clf = Classifier.load("model.onnx")                  # finds model.npz, checks the digest binding
    labels, scores = clf.predict(batch_uint8_nhwc)       # [B] int64, [B] float32
    result = clf.classify_scene("scene.tif", tile=64)    # SceneResult: class_map [rows, cols], ...
    write_scene_outputs(result, "classmap.tif", quicklook="look.png")
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module that defines it. Lazy (PEP 562) so that importing a leaf such as
# ``rfmml.runtime.imageio`` or ``rfmml.runtime.errors`` never loads onnxruntime.
_EXPORTS = {
    "infer_scene": "infer",
    "write_scene_outputs": "outputs",
    "Head": "artifact",
    "load_head": "artifact",
    "save_head": "artifact",
    "sha256_file": "artifact",
    "Classifier": "classifier",
    "FolderResult": "folder",
    "classify_folder": "folder",
    "write_folder_csv": "folder",
    "load_tile": "imageio",
    "write_class_map": "outputs",
    "write_quicklook": "quicklook",
    "write_tile_csv": "outputs",
    "SKIPPED": "scene",
    "SceneResult": "scene",
    "classify_scene": "scene",
    "Grid": "tiling",
    "Window": "tiling",
    "tile_grid": "tiling",
    "SceneOutputs": "outputs",
    "render_quicklook": "quicklook",
    "RfmmlError": "errors",
    "OutputError": "errors",
    "Enrolment": "artifact",
    "InputError": "errors",
    "ArtifactError": "errors",
    "ImageReadError": "errors",
    "SceneError": "errors",
    "classify_scenes": "scene_archive",
    "ArchiveSummary": "scene_archive",
    "SceneOutcome": "scene_job",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rfmml.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rfmml.runtime.{module}"), name)
