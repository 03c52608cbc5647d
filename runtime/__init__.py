"""rfmml.runtime: classify aerial imagery with an exported rfmml pair (model.onnx + model.npz).

numpy + onnxruntime + Pillow (+ click for the CLI); rasterio only for GeoTIFF (``rfmml[geo]``).
Never imports torch.

    from rfmml.runtime import Classifier, write_scene_outputs
    clf = Classifier.load("model.onnx")                  # finds model.npz, checks the digest binding
    labels, scores = clf.predict(batch_uint8_nhwc)       # [B] int64, [B] float32
    result = clf.classify_scene("scene.tif", tile=64)    # SceneResult: class_map [rows, cols], ...
    write_scene_outputs(result, "classmap.tif", quicklook="look.png")
"""

from rfmml.runtime.api import infer_scene, write_scene_outputs
from rfmml.runtime.artifact import ArtifactError, Head, load_head, save_head, sha256_file
from rfmml.runtime.classifier import Classifier
from rfmml.runtime.folder import FolderResult, classify_folder, write_folder_csv
from rfmml.runtime.imageio import ImageReadError, load_tile
from rfmml.runtime.outputs import write_class_map, write_quicklook, write_tile_csv
from rfmml.runtime.scene import SKIPPED, SceneResult, classify_scene
from rfmml.runtime.scene_io import SceneError
from rfmml.runtime.tiling import Grid, Window, tile_grid

__all__ = [
    "SKIPPED",
    "ArtifactError",
    "Classifier",
    "FolderResult",
    "Grid",
    "Head",
    "ImageReadError",
    "SceneError",
    "SceneResult",
    "Window",
    "classify_folder",
    "classify_scene",
    "infer_scene",
    "load_head",
    "load_tile",
    "save_head",
    "sha256_file",
    "tile_grid",
    "write_class_map",
    "write_folder_csv",
    "write_quicklook",
    "write_scene_outputs",
    "write_tile_csv",
]
