"""The quick-look picture: the scene and its class map side by side, and a legend with tile counts.

    [ scene ]  [ class map ]  [ wrong tiles ]  legend: colour, class (tiles), skipped (tiles), wrong

The scene panel is the scene downsampled (longer side ``max_side``); the class-map panel, the same
size, paints every grid cell in its class's colour (skipped cells dark grey), so neither hides the
other as a blend would. Where the true classes are known (``truth``, e.g. ``rfmml-demo``'s synthetic
scene) a third panel repeats the class map with the correct tiles faded and the wrong ones in red.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rfmml.runtime.errors import InputError
from rfmml.runtime.output_files import StagedOutputs
from rfmml.runtime.scene import SKIPPED, SceneResult
from rfmml.runtime.scene_io import open_scene

BASE_COLOURS = [
    (230, 159, 0), (34, 139, 34), (154, 205, 50), (128, 128, 128), (220, 20, 60), (173, 255, 47),
    (148, 0, 211), (255, 105, 180), (30, 144, 255), (0, 0, 139), (255, 215, 0), (0, 206, 209),
    (139, 69, 19), (255, 127, 80), (70, 130, 180), (199, 21, 133), (85, 107, 47), (250, 128, 114),
    (75, 0, 130), (240, 230, 140),
]  # fmt: skip
SKIPPED_COLOUR = (48, 48, 48)
WRONG_COLOUR = (255, 0, 0)
FADE = 0.75  # correct tiles in the error panel: this much white over the class colour
MARGIN, TITLE_H, LINE_H = 8, 16, 16


def palette(n_classes: int) -> np.ndarray:
    """Distinct RGB colours uint8 [n_classes, 3]: 20 fixed ones, then evenly spaced hues."""
    colours = list(BASE_COLOURS[:n_classes])
    for i in range(len(colours), n_classes):
        hue = (i * 0.618033988749895) % 1.0
        colours.append(tuple(int(255 * v) for v in colorsys.hsv_to_rgb(hue, 0.75, 0.9)))
    return np.array(colours, dtype=np.uint8).reshape(-1, 3)


def _overview(result: SceneResult, max_side: int) -> np.ndarray:
    scene = open_scene(result.path, bands=result.bands, zero_collar=result.zero_collar)
    try:
        return scene.overview(max_side)
    finally:
        scene.close()


def _cells(result: SceneResult, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid row int64 [height] and column int64 [width] under each pixel of a panel of that size."""
    grid = result.grid
    ox, oy = grid.cell_origin()
    xs = ((np.arange(width) + 0.5) * grid.width / width - ox) // grid.stride_x
    ys = ((np.arange(height) + 0.5) * grid.height / height - oy) // grid.stride_y
    rows = np.clip(ys, 0, grid.n_rows - 1).astype(np.int64)
    cols = np.clip(xs, 0, grid.n_cols - 1).astype(np.int64)
    return rows, cols


def _colour_table(n_classes: int) -> np.ndarray:
    """uint8 [256, 3]: class colours, SKIPPED_COLOUR at 255 (and for any unused value)."""
    table = np.tile(np.array(SKIPPED_COLOUR, np.uint8), (256, 1))
    table[:n_classes] = palette(n_classes)
    return table


def _wrong_cells(result: SceneResult, truth: np.ndarray) -> np.ndarray:
    """bool [n_rows, n_cols]: classified tiles whose class differs from a known true class."""
    truth = np.asarray(truth)
    if truth.shape != result.class_map.shape or not np.issubdtype(truth.dtype, np.integer):
        raise InputError(
            f"truth must be an integer class grid of shape {result.class_map.shape}, "
            f"got {truth.dtype} {truth.shape}"
        )
    known = (truth >= 0) & (truth < len(result.class_names))
    classified = result.class_map != SKIPPED
    return known & classified & (result.class_map.astype(np.int64) != truth)


def _panels(result: SceneResult, max_side: int, truth: np.ndarray | None) -> list[tuple[str, np.ndarray]]:
    """(title, uint8 [h, w, 3]) for the scene, the class map and, with ``truth``, the wrong tiles."""
    scene = _overview(result, max_side)
    rows, cols = _cells(result, *scene.shape[:2])
    classes = result.class_map[rows[:, None], cols[None, :]]
    table = _colour_table(len(result.class_names))
    panels = [("scene", scene), ("class map", table[classes])]
    if truth is not None:
        wrong = _wrong_cells(result, truth)
        faded = table[classes].astype(np.float32) * (1 - FADE) + 255.0 * FADE
        faded[classes == SKIPPED] = SKIPPED_COLOUR
        faded[wrong[rows[:, None], cols[None, :]]] = WRONG_COLOUR
        n_wrong, n_classified = int(wrong.sum()), result.n_classified
        panels.append((f"wrong: {n_wrong} of {n_classified} tiles", (faded + 0.5).astype(np.uint8)))
    return panels


def _legend(result: SceneResult, truth: np.ndarray | None) -> list[tuple[str, tuple[int, ...]]]:
    counts = result.counts()
    colours = palette(len(result.class_names))
    entries = [(f"{name} ({counts[name]})", tuple(int(v) for v in colour))
               for name, colour in zip(result.class_names, colours, strict=True)]  # fmt: skip
    entries.append((f"skipped ({result.n_skipped})", SKIPPED_COLOUR))
    if truth is not None:
        entries.append((f"wrong ({int(_wrong_cells(result, truth).sum())})", WRONG_COLOUR))
    return entries


def render_quicklook(
    result: SceneResult, max_side: int = 1024, truth: np.ndarray | None = None
) -> Image.Image:
    """The quick-look as an RGB image (see the module docstring); panels' longer side is ``max_side``."""
    font = ImageFont.load_default()
    panels = _panels(result, max_side, truth)
    legend = _legend(result, truth)
    panel_h, panel_w = panels[0][1].shape[:2]
    legend_w = max(int(font.getlength(text)) for text, _ in legend) + 2 * MARGIN + 18
    width = len(panels) * (panel_w + MARGIN) + MARGIN + legend_w
    height = max(TITLE_H + panel_h, LINE_H * len(legend)) + 2 * MARGIN
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (title, pixels) in enumerate(panels):
        x = MARGIN + i * (panel_w + MARGIN)
        draw.text((x, MARGIN), title, fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(pixels, mode="RGB"), (x, MARGIN + TITLE_H))
    x = len(panels) * (panel_w + MARGIN) + MARGIN
    for i, (text, colour) in enumerate(legend):
        y = MARGIN + i * LINE_H
        draw.rectangle([x, y, x + 12, y + 12], fill=colour, outline=(0, 0, 0))
        draw.text((x + 18, y), text, fill=(0, 0, 0), font=font)
    return canvas


def write_quicklook_to(result: SceneResult, path: Path, max_side: int, truth: np.ndarray | None) -> None:
    """Render and save as PNG to exactly ``path`` (no staging: callers stage it)."""
    render_quicklook(result, max_side, truth).save(path, format="PNG")


def write_quicklook(
    result: SceneResult, path: str | Path, max_side: int = 1024, truth: np.ndarray | None = None
) -> Path:
    """Write the quick-look PNG (all or nothing). ``truth``: optional true class per grid cell, integer
    [n_rows, n_cols] like ``result.class_map`` (values outside 0..C-1 = unknown), adds the wrong-tiles
    panel."""
    path = Path(path)
    with StagedOutputs() as staged:
        staged.write(path, lambda tmp: write_quicklook_to(result, tmp, max_side, truth))
    return path
