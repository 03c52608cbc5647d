"""Generators of ``rfmml-infer`` cases on scenes: damaged GeoTIFFs (the small quadrant scene and the
shared real ones), odd scenes (paletted with a collar, 1/2/4-band, 16-bit, float, tiny, PNG/JPEG) and
header bombs under the address-space limit. Each takes (world, rng, seed) -> Case."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from fuzz_bytes import jpeg_bomb, mutate, png_bomb, tiff_bomb
from fuzz_checks import PREVIOUS, no_temp_files, outputs_complete, previous_kept, read_csv_rows
from fuzz_harness import Case
from fuzz_world import World, encode, quadrant_scene
from runtime_fixtures import COLOURS, NAMES, write_geotiff


def scene_case(world: World, family: str, seed: int, scene: Path, expect: str, note: str,
               memory: bool = False, extra: tuple[str, ...] = ()) -> Case:  # fmt: skip
    """Classify ``scene`` into a class map + CSV that already exist (previous outputs)."""
    work = scene.parent
    out = work / "out"
    out.mkdir(exist_ok=True)
    class_map, csv = out / "map.tif", out / "map.csv"
    for path in (class_map, csv):
        path.write_bytes(PREVIOUS)
    argv = [
        "--model",
        str(world.model),
        str(scene),
        "--out",
        str(class_map),
        "--csv",
        str(csv),
        "--quiet",
        *extra,
    ]
    checks = [previous_kept([class_map, csv]), outputs_complete(csv, class_map), no_temp_files(out)]
    return Case(family, seed, "infer", argv, expect, checks, memory=memory, limit_s=60 if memory else 30,
                note=note, workdir=work)  # fmt: skip


def scene_damaged(world: World, rng: np.random.Generator, seed: int) -> Case:
    """The small GeoTIFF scene (or a shared real scene, 1 case in 8) truncated, bit-flipped or spliced."""
    work = world.scratch("scene-damaged")
    source = world.scene
    if world.real_scenes and seed % 8 == 7:
        source = world.real_scenes[int(rng.integers(0, len(world.real_scenes)))]
    kind, data = mutate(rng, source.read_bytes())
    scene = work / f"scene{source.suffix}"
    scene.write_bytes(data)
    return scene_case(world, "scene-damaged", seed, scene, "any", f"{kind} {source.name}")


def _palette_scene(path: Path) -> Path:
    """A paletted GeoTIFF: index 0 = black nodata collar, indices 1-4 = the class colours."""
    import rasterio

    indices = np.zeros((1, 160, 160), np.uint8)
    quadrants = quadrant_scene(128)
    for label in range(4):
        indices[0, 16:144, 16:144][(quadrants == COLOURS[label]).all(-1)] = label + 1
    profile = dict(driver="GTiff", width=160, height=160, count=1, dtype="uint8", photometric="palette")
    with warnings.catch_warnings(), rasterio.open(path, "w", **profile) as dst:
        warnings.simplefilter("ignore")  # no geotransform: the tiling does not need one
        dst.write(indices)
        colormap = {0: (0, 0, 0, 255), **{i + 1: (*map(int, COLOURS[i]), 255) for i in range(4)}}
        dst.write_colormap(1, colormap)
    return path


def scene_expected_classes(expected: dict[tuple[int, int], str], csv: Path):
    """Exit 0: the CSV classes of the listed (row, col) tiles are the expected class names."""

    def check(outcome):
        if outcome.code != 0:
            return None
        rows = read_csv_rows(csv.read_text(encoding="utf-8")) or []
        got = {(int(r["row"]), int(r["col"])): r.get("class", "") for r in rows}
        for cell, name in expected.items():
            if got.get(cell) != name:
                return ("wrong", f"tile {cell} classified {got.get(cell)!r}, expected {name!r}")
        return None

    return check


def scene_mode(world: World, rng: np.random.Generator, seed: int) -> Case:
    """Odd scenes: paletted with a black collar (classes must follow the colour table, not raw indices),
    1/2/4-band, 16-bit, float32, tiny (smaller than a tile), PNG/JPEG instead of GeoTIFF."""
    work = world.scratch("scene-mode")
    kind = ("palette", "gray", "2band", "4band", "uint16", "float32", "tiny", "png", "jpg")[seed % 9]
    pixels = quadrant_scene(128)
    scene = work / ("scene.png" if kind == "png" else "scene.jpg" if kind == "jpg" else "scene.tif")
    expected: dict[tuple[int, int], str] = {}
    if kind == "palette":
        _palette_scene(scene)
        expected = {(1, 1): NAMES[0], (1, 3): NAMES[1], (3, 1): NAMES[2], (3, 3): NAMES[3]}
    elif kind in ("png", "jpg"):
        scene.write_bytes(encode(pixels, scene.suffix))
        expected = {(0, 0): NAMES[0], (0, 3): NAMES[1], (3, 0): NAMES[2], (3, 3): NAMES[3]}
    elif kind == "tiny":
        write_geotiff(scene, pixels[: int(rng.integers(1, 31)), : int(rng.integers(1, 31))])
    else:
        bands = {"gray": 1, "2band": 2, "4band": 4, "uint16": 3, "float32": 3}[kind]
        stack = np.concatenate([pixels, pixels[..., :1]], -1)[..., :bands] if bands != 3 else pixels
        dtype = {"uint16": np.uint16, "float32": np.float32}.get(kind, np.uint8)
        scale = {"uint16": 257.0, "float32": 1.0 / 255.0}.get(kind, 1.0)
        write_geotiff(scene, (stack.astype(np.float64) * scale).astype(dtype))
        if kind in ("uint16", "float32"):
            expected = {(0, 0): NAMES[0], (3, 3): NAMES[3]}
    case = scene_case(world, "scene-mode", seed, scene, "any", kind)
    csv = Path(case.argv[case.argv.index("--csv") + 1])
    case.checks.append(scene_expected_classes(expected, csv))
    return case


SCENE_BOMBS = (  # (name, width, height, extra flags)
    ("bomb.tif", 1_000_000, 1_000_000, ()),
    ("bomb-plain.tif", 100_000, 100_000, ()),
    ("bomb.png", 60000, 60000, ()),
    ("bomb.jpg", 65500, 65500, ()),
    ("bomb.tif", 1_000_000, 1_000_000, ("--tile", "4096")),  # few tiles, each huge
    ("bomb-plain.tif", 100_000, 100_000, ("--tile", "4096", "--batch", "1024")),
    ("bomb-12000.png", 12000, 12000, ()),
)


def scene_bomb(world: World, rng: np.random.Generator, seed: int) -> Case:
    """A GeoTIFF / TIFF / PNG / JPEG of a few hundred bytes declaring up to 10^6 x 10^6 pixels, as a scene,
    under the address-space limit: refused, or read in bounded memory, never exhausting it."""
    work = world.scratch("scene-bomb")
    name, width, height, extra = SCENE_BOMBS[seed % len(SCENE_BOMBS)]
    if name.endswith(".tif"):
        data = tiff_bomb(width, height, geo="plain" not in name)
    else:
        data = (png_bomb if name.endswith(".png") else jpeg_bomb)(width, height)
    scene = work / name
    scene.write_bytes(data)
    return scene_case(world, "scene-bomb", seed, scene, "error", f"{name} {' '.join(extra)}", memory=True,
                      extra=extra)  # fmt: skip
