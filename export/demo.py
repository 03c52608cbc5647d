"""``rfmml-demo``: the README's main job on the embedded default, no download.

Trains RF-MML+ on the trainer's synthetic aerial set the way ``rfmml-train --data DIR`` trains by
default (``--method rfmml-plus``, efficientnet_lite0 with its packaged ImageNet weights, ``--tune
head``; at 64 px), exports the pair (model.onnx + model.npz), builds a synthetic scene whose every
tile has a known class (patches of land cover drawn from new, unseen tiles), classifies it with the
runtime exactly as ``rfmml-infer`` does, and prints the accuracy of the class map and where the
pictures are: the quick-look shows the scene, the class map and, since every tile's class is known,
a third panel marking the wrong tiles. Errors and exit codes are the shared shell's
(``rfmml.runtime.cli_shell``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import click
import numpy as np

from rfmml.runtime.cli_shell import entry_point, run_command
from rfmml.trainer.config_rules import SEED_MAX  # the trainer's seed range (torch-free module)

PROG = "rfmml-demo"
SCENE_ROWS, SCENE_COLS = 24, 32  # grid cells of the synthetic scene
# The real default path for --data (offline ImageNet efficientnet_lite0, --tune head) at 64 px, the
# size the synthetic tiles suit: on 2 CPU cores the features take ~25 s, the head's 700 episodes a
# few seconds (BENCHMARKS.md); rfmml-train without --data keeps conv4 for the tests' tiny runs.
DEMO_MODEL = {"backbone": "efficientnet_lite0", "pretrained": True, "image_size": 64, "tune": "head"}


def scene_labels(rows: int, cols: int, n_classes: int, seed: int) -> np.ndarray:
    """int64 [rows, cols]: land-cover patches (nearest of a few random seed points, a Voronoi map)."""
    rng = np.random.default_rng(seed)
    n_patches = max(n_classes * 2, 8)
    centres = rng.uniform([0, 0], [rows, cols], size=(n_patches, 2))
    patch_class = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, n_patches - n_classes)])
    rr, cc = np.mgrid[0:rows, 0:cols]
    d = (rr[..., None] - centres[:, 0]) ** 2 + (cc[..., None] - centres[:, 1]) ** 2
    return patch_class[d.argmin(-1)].astype(np.int64)


def build_scene(labels: np.ndarray, tile: int, seed: int) -> np.ndarray:
    """uint8 [rows * tile, cols * tile, 3]: one freshly rendered tile of class labels[r, c] per cell."""
    from rfmml.trainer.synthetic import render_class_tile

    rng = np.random.default_rng([seed, 104729])  # not the training set's stream: unseen tiles
    rows, cols = labels.shape
    scene = np.empty((rows * tile, cols * tile, 3), np.uint8)
    for r in range(rows):
        for c in range(cols):
            scene[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = render_class_tile(
                int(labels[r, c]), rng, tile
            )
    return scene


def write_scene(pixels: np.ndarray, path: Path) -> Path:
    """A GeoTIFF (UTM 32N, 10 m pixels, like Sentinel-2) when rasterio is installed, else a PNG."""
    try:
        import rasterio
        from rasterio.transform import from_origin
    except ImportError:
        from PIL import Image

        path = path.with_suffix(".png")
        Image.fromarray(pixels).save(path)
        return path
    path = path.with_suffix(".tif")
    profile = {
        "driver": "GTiff",
        "width": pixels.shape[1],
        "height": pixels.shape[0],
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32632",
        "transform": from_origin(500000.0, 5300000.0, 10.0, 10.0),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels.transpose(2, 0, 1))
    return path


def run_demo(out: Path, seed: int = 0, say: Callable[[str], None] = print) -> float:
    """Train, export, infer; return the class-map accuracy over the scene's tiles."""
    out.mkdir(parents=True, exist_ok=True)
    model = _train_and_export(out, seed, say)
    from rfmml.runtime.artifact import load_head
    from rfmml.runtime.infer import infer_scene

    head = load_head(model.with_suffix(".npz"))
    tile = head.input_size[0]
    labels = scene_labels(SCENE_ROWS, SCENE_COLS, len(head.class_names), seed)
    scene_path = write_scene(build_scene(labels, tile, seed), out / "scene")
    say(
        f"[3/4] synthetic scene with known labels: {scene_path} "
        f"({SCENE_COLS * tile} x {SCENE_ROWS * tile} px, {labels.size} tiles of {tile} px)"
    )
    class_map_path = out / ("classmap" + scene_path.suffix)
    result, written = infer_scene(
        model, scene_path, class_map_path, quicklook=out / "quicklook.png", truth=labels
    )
    say(f"[4/4] classified with onnxruntime in {result.seconds:.2f} s")
    accuracy = _report_accuracy(result.class_map.astype(np.int64), labels, head, say)
    say(
        f"pictures: {written.quicklook} (scene | class map | wrong tiles, legend with counts), "
        f"{written.class_map} (class map), {written.csv} (per tile)"
    )
    return accuracy


def _train_and_export(out: Path, seed: int, say: Callable[[str], None]) -> Path:
    """Steps 1 and 2: the run in OUT/run (a finished one is reused) and the pair OUT/model.onnx + .npz."""
    from rfmml.export.pipeline import export_run
    from rfmml.trainer.config import TrainConfig
    from rfmml.trainer.run import run_training

    run_dir = out / "run"
    if (run_dir / "eval.json").is_file():  # a finished run from an earlier demo: reuse, never overwrite
        say(f"[1/4] reusing the finished run {run_dir} (delete it to train again)")
    else:
        say(f"[1/4] training on the embedded synthetic set -> {run_dir}")
        run_training(TrainConfig(out=str(run_dir), seed=seed, **DEMO_MODEL), say=say)
    model = out / "model.onnx"
    say(f"[2/4] exporting -> {model} + {model.with_suffix('.npz')}")
    export_run(run_dir, model, log=say, force=True)
    return model


def _report_accuracy(predicted: np.ndarray, labels: np.ndarray, head, say: Callable[[str], None]) -> float:
    """Print the accuracy of the class map [rows, cols] against the true labels, overall and per
    class; return the overall fraction."""
    accuracy = float((predicted == labels).mean())
    chance = 100 / len(head.class_names)
    say(f"class-map accuracy: {100 * accuracy:.1f}% of {labels.size} tiles (chance {chance:.1f}%)")
    for index, name in enumerate(head.class_names):
        cells = labels == index
        if cells.any():
            kind = "majority" if head.majority[index] else "minority"
            share = 100 * float((predicted[cells] == index).mean())
            say(f"  {name:<10} {kind:<8} {share:5.1f}% of {int(cells.sum())} tiles")
    return accuracy


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default="demo",
    show_default=True,
    help="Folder for the run, the model pair, the scene and the pictures.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, SEED_MAX),
    default=0,
    show_default=True,
    help="Seed of the training run and of the synthetic scene.",
)
def demo_command(out: Path, seed: int) -> None:
    """Train on the embedded default, export, classify a synthetic scene: a few CPU minutes.

    Example: rfmml-demo --out demo/
    """
    run_demo(out, seed)


def main(argv: Sequence[str] | None = None) -> int:
    """``rfmml-demo`` in-process (tests): the exit code, never SystemExit."""
    return run_command(demo_command, argv, PROG)


cli = entry_point(demo_command, PROG)
