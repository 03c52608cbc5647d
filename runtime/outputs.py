"""Scene outputs: class-map raster (GeoTIFF or palette PNG), per-tile CSV, and all of them at once.

Class map: uint8, one pixel per grid cell, value = index into ``class_names``, 255 = skipped (declared
as nodata / transparent). The GeoTIFF carries the scene's CRS and the grid transform
(:meth:`SceneResult.map_transform`), a colour table, the band description "class", the class names as
tags (``class_names`` JSON on the dataset, ``CLASS_<i>`` on the band) and as GDAL category names in a
``.aux.xml`` sidecar (QGIS and gdalinfo read them). The PNG carries a palette and the same names in a
``class_names`` text chunk. The quick-look picture is :mod:`rfmml.runtime.quicklook`.

Every writer is all or nothing (:class:`rfmml.runtime.output_files.StagedOutputs`): a temporary beside
the output, renamed when complete; :func:`write_scene_outputs` renames the whole set together at the end,
so a failed or killed run never leaves a half-written file nor destroys the previous outputs.
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from rfmml.runtime.errors import InputError, SceneError
from rfmml.runtime.output_files import StagedOutputs, path_text, utf8_path
from rfmml.runtime.quicklook import palette, write_quicklook_to
from rfmml.runtime.scene import SKIPPED, SceneResult
from rfmml.runtime.scene_io import have_rasterio

CLASS_MAP_SUFFIXES = (".tif", ".tiff", ".png")


def _tags(result: SceneResult) -> dict[str, str]:
    g = result.grid
    return {
        "class_names": json.dumps(list(result.class_names)),
        "head": result.head_kind,
        "tile": f"{g.tile_w}x{g.tile_h}",
        "stride": f"{g.stride_x}x{g.stride_y}",
        "source": path_text(result.path),
        "skipped_value": str(SKIPPED),
    }


def check_class_map_path(path: str | Path) -> Path:
    """``path`` if it names a class map this runtime can write; InputError (one line) otherwise."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CLASS_MAP_SUFFIXES:
        raise InputError(f"{path_text(path)}: a class map is .tif/.tiff (GeoTIFF) or .png")
    if suffix != ".png" and not have_rasterio():
        raise SceneError(
            f'{path_text(path)}: writing a GeoTIFF class map needs rasterio: pip install "rfmml[geo]"'
        )
    if suffix != ".png":
        utf8_path(path.absolute(), "GDAL (writing GeoTIFF class maps)")
    return path


def _stage_class_map(result: SceneResult, path: Path, staged: StagedOutputs) -> None:
    if path.suffix.lower() == ".png":
        staged.write(path, lambda tmp: _write_png(result, tmp))
        return
    staged.write(path, lambda tmp: _write_geotiff(result, tmp))
    categories = "".join(f"<Category>{escape(name)}</Category>" for name in result.class_names)
    aux = (
        '<PAMDataset><PAMRasterBand band="1"><CategoryNames>'
        f"{categories}</CategoryNames></PAMRasterBand></PAMDataset>\n"
    )
    staged.write(Path(str(path) + ".aux.xml"), lambda tmp: tmp.write_text(aux, encoding="utf-8"))


def write_class_map(result: SceneResult, path: str | Path) -> Path:
    """Write the class map as GeoTIFF (.tif/.tiff, needs rasterio; + .aux.xml) or palette PNG (.png)."""
    path = check_class_map_path(path)
    with StagedOutputs() as staged:
        _stage_class_map(result, path, staged)
    return path


def _write_geotiff(result: SceneResult, path: Path) -> None:
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


def _write_png(result: SceneResult, path: Path) -> None:
    colours = np.zeros((256, 3), dtype=np.uint8)
    colours[: len(result.class_names)] = palette(len(result.class_names))
    image = Image.fromarray(result.class_map, mode="P")
    image.putpalette(colours.ravel().tolist())
    info = PngInfo()
    for key, value in _tags(result).items():
        info.add_text(key, value)
    image.save(path, format="PNG", pnginfo=info, transparency=SKIPPED)


def csv_header(result: SceneResult, k: int) -> list[str]:
    header = ["row", "col", "x0", "y0", "x1", "y1", "status", "padded", "valid_fraction", "class", "score"]
    for rank in range(2, k + 1):
        header += [f"top{rank}_class", f"top{rank}_score"]
    if result.georeferenced:
        header += ["map_x", "map_y"]
    return header


def _tile_rows(result: SceneResult):
    """The CSV rows of :func:`write_tile_csv`, row-major, one list per tile."""
    k = result.top_labels.shape[-1]
    names = result.class_names
    grid = result.grid
    for row in range(grid.n_rows):
        for col in range(grid.n_cols):
            w = grid.window(row, col)
            skipped = result.class_map[row, col] == SKIPPED
            line = [row, col, w.x0, w.y0, w.x1, w.y1, "skipped" if skipped else "ok", int(grid.padded)]
            line.append(f"{result.valid_fraction[row, col]:.4f}")
            for rank in range(k):
                label = int(result.top_labels[row, col, rank])
                line += ["", ""] if skipped else [names[label], f"{result.top_scores[row, col, rank]:.6g}"]
            if result.georeferenced:
                mx, my = result.map_xy(*grid.tile_centre(row, col))
                line += [f"{mx:.3f}", f"{my:.3f}"]
            yield line


def _write_csv(result: SceneResult, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(result, result.top_labels.shape[-1]))
        writer.writerows(_tile_rows(result))


def write_tile_csv(result: SceneResult, path: str | Path) -> Path:
    """One row per tile: grid cell, pixel window, status (ok/skipped), class, score, top-k, map x/y."""
    path = Path(path)
    with StagedOutputs() as staged:
        staged.write(path, lambda tmp: _write_csv(result, tmp))
    return path


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
    truth: np.ndarray | None = None,
) -> SceneOutputs:
    """Write the class map (``out``: .tif GeoTIFF + .aux.xml, or .png), the per-tile CSV (default
    ``out`` with .csv) and optionally a quick-look PNG (``truth``: see
    :func:`rfmml.runtime.quicklook.write_quicklook`), all to temporaries first, renamed together only
    when every one is complete."""
    out = check_class_map_path(out)
    csv_path = Path(csv) if csv is not None else out.with_suffix(".csv")
    look = Path(quicklook) if quicklook is not None else None
    with StagedOutputs() as staged:
        _stage_class_map(result, out, staged)
        staged.write(csv_path, lambda tmp: _write_csv(result, tmp))
        if look is not None:
            staged.write(look, lambda tmp: write_quicklook_to(result, tmp, quicklook_size, truth))
    return SceneOutputs(out, csv_path, look)


def summary_lines(result: SceneResult) -> list[str]:
    """Human-readable summary: grid, time, tiles/s, tiles per class, skipped."""
    g = result.grid
    rate = g.n_tiles / result.seconds if result.seconds > 0 else float("nan")
    lines = [
        f"scene {path_text(result.path)} ({g.width}x{g.height} px, {result.description})",
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
