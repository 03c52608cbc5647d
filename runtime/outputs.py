"""Scene outputs: class-map raster (GeoTIFF or palette PNG), per-tile CSV, quick-look PNG.

Class map: uint8, one pixel per grid cell, value = index into ``class_names``, 255 = skipped (declared
as nodata / transparent). The GeoTIFF carries the scene's CRS and the grid transform
(:meth:`SceneResult.map_transform`), a colour table, the band description "class", the class names as
tags (``class_names`` JSON on the dataset, ``CLASS_<i>`` on the band) and as GDAL category names in a
``.aux.xml`` sidecar (QGIS and gdalinfo read them). The PNG carries a palette and the same names in a
``class_names`` text chunk.
"""

from __future__ import annotations

import colorsys
import csv
import json
import warnings
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from rfmml.runtime.scene import SKIPPED, SceneResult
from rfmml.runtime.scene_io import SceneError, have_rasterio, open_scene

BASE_COLOURS = [
    (230, 159, 0), (34, 139, 34), (154, 205, 50), (128, 128, 128), (220, 20, 60), (173, 255, 47),
    (148, 0, 211), (255, 105, 180), (30, 144, 255), (0, 0, 139), (255, 215, 0), (0, 206, 209),
    (139, 69, 19), (255, 127, 80), (70, 130, 180), (199, 21, 133), (85, 107, 47), (250, 128, 114),
    (75, 0, 130), (240, 230, 140),
]  # fmt: skip


def palette(n_classes: int) -> np.ndarray:
    """Distinct RGB colours uint8 [n_classes, 3]: 20 fixed ones, then evenly spaced hues."""
    colours = list(BASE_COLOURS[:n_classes])
    for i in range(len(colours), n_classes):
        hue = (i * 0.618033988749895) % 1.0
        colours.append(tuple(int(255 * v) for v in colorsys.hsv_to_rgb(hue, 0.75, 0.9)))
    return np.array(colours, dtype=np.uint8).reshape(-1, 3)


def _tags(result: SceneResult) -> dict[str, str]:
    g = result.grid
    return {
        "class_names": json.dumps(list(result.class_names)),
        "head": result.head_kind,
        "tile": f"{g.tile_w}x{g.tile_h}",
        "stride": f"{g.stride_x}x{g.stride_y}",
        "source": str(result.path),
        "skipped_value": str(SKIPPED),
    }


def write_class_map(result: SceneResult, path: str | Path) -> Path:
    """Write the class map as GeoTIFF (.tif/.tiff, needs rasterio) or palette PNG (.png)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        _write_geotiff(result, path)
    elif suffix == ".png":
        _write_png(result, path)
    else:
        raise SceneError(f"{path}: class map must be .tif/.tiff (GeoTIFF) or .png")
    return path


def _write_geotiff(result: SceneResult, path: Path) -> None:
    if not have_rasterio():
        raise SceneError(f'{path}: writing a GeoTIFF class map needs rasterio: pip install "rfmml[geo]"')
    import rasterio
    from rasterio.transform import Affine

    colours = palette(len(result.class_names))
    profile = dict(driver="GTiff", width=result.grid.n_cols, height=result.grid.n_rows, count=1)
    profile.update(dtype="uint8", nodata=SKIPPED, compress="deflate")
    transform = result.map_transform()
    if transform is not None:
        profile.update(transform=Affine(*transform), crs=result.crs_wkt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(result.class_map, 1)
            table = {i: (*map(int, colours[i]), 255) for i in range(len(colours))}
            table[SKIPPED] = (0, 0, 0, 0)
            dst.write_colormap(1, table)
            dst.set_band_description(1, "class")
            dst.update_tags(**_tags(result))
            dst.update_tags(1, **{f"CLASS_{i}": name for i, name in enumerate(result.class_names)})
    categories = "".join(f"<Category>{escape(name)}</Category>" for name in result.class_names)
    aux = (
        '<PAMDataset><PAMRasterBand band="1"><CategoryNames>'
        f"{categories}</CategoryNames></PAMRasterBand></PAMDataset>\n"
    )
    Path(str(path) + ".aux.xml").write_text(aux, encoding="utf-8")


def _write_png(result: SceneResult, path: Path) -> None:
    colours = np.zeros((256, 3), dtype=np.uint8)
    colours[: len(result.class_names)] = palette(len(result.class_names))
    image = Image.fromarray(result.class_map, mode="P")
    image.putpalette(colours.ravel().tolist())
    info = PngInfo()
    for key, value in _tags(result).items():
        info.add_text(key, value)
    image.save(path, pnginfo=info, transparency=SKIPPED)


def csv_header(result: SceneResult, k: int) -> list[str]:
    header = ["row", "col", "x0", "y0", "x1", "y1", "status", "padded", "valid_fraction", "class", "score"]
    for rank in range(2, k + 1):
        header += [f"top{rank}_class", f"top{rank}_score"]
    if result.georeferenced:
        header += ["map_x", "map_y"]
    return header


def write_tile_csv(result: SceneResult, path: str | Path) -> Path:
    """One row per tile: grid cell, pixel window, status (ok/skipped), class, score, top-k, map x/y."""
    path = Path(path)
    k = result.top_labels.shape[-1]
    names = result.class_names
    grid = result.grid
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(result, k))
        for row in range(grid.n_rows):
            for col in range(grid.n_cols):
                w = grid.window(row, col)
                skipped = result.class_map[row, col] == SKIPPED
                line = [row, col, w.x0, w.y0, w.x1, w.y1, "skipped" if skipped else "ok", int(grid.padded)]
                line.append(f"{result.valid_fraction[row, col]:.4f}")
                for rank in range(k):
                    label = int(result.top_labels[row, col, rank])
                    line += (
                        ["", ""] if skipped else [names[label], f"{result.top_scores[row, col, rank]:.6g}"]
                    )
                if result.georeferenced:
                    mx, my = result.map_xy(*grid.tile_centre(row, col))
                    line += [f"{mx:.3f}", f"{my:.3f}"]
                writer.writerow(line)
    return path


def write_quicklook(result: SceneResult, path: str | Path, max_side: int = 1024, alpha: float = 0.45) -> Path:
    """The scene downsampled, class colours blended over it (skipped tiles dimmed), a legend on the right."""
    path = Path(path)
    scene = open_scene(result.path, bands=result.bands, zero_collar=result.zero_collar)
    try:
        base = scene.overview(max_side).astype(np.float32)
    finally:
        scene.close()
    grid = result.grid
    h, w = base.shape[:2]
    ox, oy = grid.cell_origin()
    xs = ((np.arange(w) + 0.5) * grid.width / w - ox) // grid.stride_x
    ys = ((np.arange(h) + 0.5) * grid.height / h - oy) // grid.stride_y
    cols = np.clip(xs, 0, grid.n_cols - 1).astype(np.int64)
    rows = np.clip(ys, 0, grid.n_rows - 1).astype(np.int64)
    classes = result.class_map[rows[:, None], cols[None, :]]  # [h, w]
    colours = np.zeros((256, 3), dtype=np.float32)
    colours[: len(result.class_names)] = palette(len(result.class_names))
    skipped = (classes == SKIPPED)[:, :, None]
    blended = np.where(skipped, base * 0.5, base * (1 - alpha) + colours[classes] * alpha)
    picture = Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    picture = _with_legend(picture, result)
    picture.save(path)
    return path


def _with_legend(picture: Image.Image, result: SceneResult) -> Image.Image:
    font = ImageFont.load_default()
    counts = result.counts()
    lines = [
        (name, tuple(int(v) for v in colour))
        for name, colour in zip(result.class_names, palette(len(counts)), strict=True)
    ]
    labels = [f"{name} ({counts[name]})" for name, _ in lines] + [f"skipped ({result.n_skipped})"]
    line_h = 16
    text_w = max(int(font.getlength(label)) for label in labels)
    panel_w = text_w + 40
    height = max(picture.height, line_h * (len(labels) + 1) + 8)
    canvas = Image.new("RGB", (picture.width + panel_w, height), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x = picture.width + 8
    for i, label in enumerate(labels):
        y = 8 + i * line_h
        colour = lines[i][1] if i < len(lines) else (64, 64, 64)
        draw.rectangle([x, y, x + 12, y + 12], fill=colour, outline=(0, 0, 0))
        draw.text((x + 18, y), label, fill=(0, 0, 0), font=font)
    return canvas


def summary_lines(result: SceneResult) -> list[str]:
    """Human-readable summary: grid, time, tiles/s, tiles per class, skipped."""
    g = result.grid
    rate = g.n_tiles / result.seconds if result.seconds > 0 else float("nan")
    lines = [
        f"scene {result.path} ({g.width}x{g.height} px, {result.description})",
        f"grid {g.n_rows} rows x {g.n_cols} cols of {g.tile_w}x{g.tile_h} px, stride {g.stride_x}"
        + (" (scene smaller than a tile: padded)" if g.padded else ""),
        f"{g.n_tiles} tiles in {result.seconds:.2f} s ({rate:.1f} tiles/s), head {result.head_kind}, "
        f"providers {result.providers}",
    ]
    counts = result.counts()
    width = max(len(name) for name in [*counts, "skipped"])
    lines += [f"  {name:<{width}}  {count}" for name, count in counts.items()]
    lines.append(f"  {'skipped':<{width}}  {result.n_skipped} (mostly nodata)")
    return lines
