"""Builders for runtime tests: tiny contract-conforming ONNX models (onnx.helper, no torch) and heads.

The "stats" model maps uint8 [B, H, W, 3] to per-channel statistics of the pixels scaled to [0, 1]:
``mean`` -> D = 3 (per-channel means), ``meanstd`` -> D = 6 (means, then standard deviations). With
prototypes at known colours, the class of a uniform tile is predictable exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from rfmml.runtime.artifact import Head, save_head, sha256_file

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EUROSAT = DATA / "EuroSAT"
LANDSAT = DATA / "scenes" / "rasterio_landsat7" / "RGB.byte.tif"
NAIP = DATA / "scenes" / "opengeos_naip" / "m_4709963_se_14_1_20190904.tif"

# Uniform colours of the synthetic classes used by the scene and folder tests.
COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 60]], dtype=np.uint8)
NAMES = ("red", "green", "blue", "yellow")


def build_stats_model(
    path: str | Path, size: tuple[int, int] | None = (32, 32), stats: str = "mean", tag: str = ""
) -> Path:
    """Write a contract model: input ``images`` uint8 [batch, H, W, 3] (H, W dynamic when size is None),
    output ``embeddings`` float32 [batch, D]. ``tag`` goes into doc_string (changes the digest)."""
    height, width = size if size is not None else ("H", "W")
    images = helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", height, width, 3])
    dim = 3 if stats == "mean" else 6
    embeddings = helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", dim])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [1.0 / 255.0])
    nodes = [
        helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "scale"], ["xs"]),
        helper.make_node("ReduceMean", ["xs", "axes"], ["mean"], keepdims=0),
    ]
    if stats == "mean":
        nodes.append(helper.make_node("Identity", ["mean"], ["embeddings"]))
    else:
        nodes += [
            helper.make_node("Mul", ["xs", "xs"], ["x2"]),
            helper.make_node("ReduceMean", ["x2", "axes"], ["m2"], keepdims=0),
            helper.make_node("Mul", ["mean", "mean"], ["mm"]),
            helper.make_node("Sub", ["m2", "mm"], ["var"]),
            helper.make_node("Relu", ["var"], ["varp"]),
            helper.make_node("Sqrt", ["varp"], ["std"]),
            helper.make_node("Concat", ["mean", "std"], ["embeddings"], axis=1),
        ]
    graph = helper.make_graph(nodes, "stats", [images], [embeddings], initializer=[axes, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], doc_string=tag)
    model.ir_version = 9
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path


def random_head(
    n_classes: int = 3, dim: int = 4, svm: bool = True, input_size: tuple[int, int] = (16, 16), **fields
) -> Head:
    """A valid head of seeded random prototypes (and SVM) [n_classes, dim]: the last class is the one
    minority class (5 training images, the others 30). ``fields`` override any other Head field."""
    rng = np.random.default_rng(0)
    return Head(
        class_names=tuple(f"class{i}" for i in range(n_classes)),
        input_size=input_size,
        distance="euclidean",
        prototypes=rng.normal(size=(n_classes, dim)).astype(np.float32),
        majority=np.array([True] * (n_classes - 1) + [False]),
        train_counts=np.array([30] * (n_classes - 1) + [5]),
        svm_coef=rng.normal(size=(n_classes, dim)).astype(np.float32) if svm else None,
        svm_intercept=np.zeros(n_classes, np.float32) if svm else None,
        **fields,
    )


def write_head(
    model_path: str | Path,
    prototypes: np.ndarray,
    class_names: tuple[str, ...],
    input_size: tuple[int, int] = (32, 32),
    distance: str = "euclidean",
    svm: tuple[np.ndarray, np.ndarray] | None = None,
    svm_l2_normalize: bool = False,
    head_path: str | Path | None = None,
) -> Path:
    """Save a head bound to ``model_path`` (digest set); returns its path (default: model with .npz)."""
    prototypes = np.asarray(prototypes, dtype=np.float32)
    n = len(class_names)
    head = Head(
        class_names=tuple(class_names),
        input_size=input_size,
        distance=distance,
        prototypes=prototypes,
        majority=np.ones(n, dtype=bool),
        train_counts=np.full(n, 10, dtype=np.int64),
        svm_coef=None if svm is None else np.asarray(svm[0], np.float32),
        svm_intercept=None if svm is None else np.asarray(svm[1], np.float32),
        svm_l2_normalize=svm_l2_normalize,
        onnx_sha256=sha256_file(model_path),
    )
    path = Path(head_path) if head_path is not None else Path(model_path).with_suffix(".npz")
    save_head(path, head)
    return path


def colour_pair(folder: str | Path, size: tuple[int, int] = (32, 32), with_svm: bool = True) -> Path:
    """A mean model + head whose prototypes are :data:`COLOURS` / 255; returns the model path.

    The SVM head (when asked) is the linear form of the nearest-prototype rule:
    ``2 e.p - |p|^2`` ranks classes exactly like ``-|e - p|^2``.
    """
    folder = Path(folder)
    model = build_stats_model(folder / "model.onnx", size)
    protos = COLOURS.astype(np.float32) / 255.0
    svm = (2.0 * protos, -(protos**2).sum(1)) if with_svm else None
    write_head(model, protos, NAMES, input_size=size, svm=svm)
    return model


def uniform_tile(label: int, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """uint8 [H, W, 3] filled with the colour of class ``label``."""
    return np.broadcast_to(COLOURS[label], (*size, 3)).copy()


def write_geotiff(path: str | Path, rgb: np.ndarray, nodata: float | None = None, **extra) -> Path:
    """Write uint8 [H, W, C] as a tiled GeoTIFF in EPSG:32633 (10 m pixels) with rasterio."""
    import rasterio
    from rasterio.transform import from_origin

    height, width, count = rgb.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=rgb.dtype.name)
    profile.update(crs="EPSG:32633", transform=from_origin(500000.0, 5000000.0, 10.0, 10.0))
    profile.update(tiled=True, blockxsize=256, blockysize=256, compress="deflate", nodata=nodata)
    profile.update(extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(rgb, -1, 0))
    return Path(path)
