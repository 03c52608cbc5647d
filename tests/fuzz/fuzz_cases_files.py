"""Generators of ``rfmml-infer`` cases on files: tile folders (random bytes, damaged, odd modes, odd
names, bombs) and scenes (damaged, odd modes, bombs). Each takes (world, rng, seed) -> Case."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from fuzz_bytes import IMAGE_SUFFIXES, jpeg_bomb, mutate, png_bomb, random_bytes, tiff_bomb
from fuzz_checks import PREVIOUS, folder_csv, folder_rows, no_temp_files, previous_kept
from fuzz_harness import Case
from fuzz_world import World
from PIL import Image


def folder_case(
    world: World,
    family: str,
    seed: int,
    files: dict[bytes, bytes],
    refused: set[str] = frozenset(),
    expect: str = "ok",
    memory: bool = False,
    note: str = "",
) -> Case:
    """A tile folder holding ``files`` (raw file names -> content) plus one valid tile; the CSV goes
    over a previous output. The valid tile must be classified, ``refused`` names must not be."""
    work = world.scratch(family)
    tiles = work / "tiles"
    tiles.mkdir()
    files = {b"valid-0000.png": world.valid_tile(int(seed % 4)), **files}
    for name, data in files.items():
        with open(os.path.join(os.fsencode(tiles), name), "wb") as handle:
            handle.write(data)
    out = work / "out" / "predictions.csv"
    out.parent.mkdir()
    out.write_bytes(PREVIOUS)
    argv = ["--model", str(world.model), str(tiles), "--out", str(out), "--quiet"]
    checks = [
        folder_csv(out, {"valid-0000.png"}, set(refused)),
        previous_kept([out]),
        no_temp_files(out.parent),
    ]
    return Case(family, seed, "infer", argv, expect, checks, memory=memory, limit_s=60 if memory else 30,
                note=note, workdir=work)  # fmt: skip


def suffix_of(rng: np.random.Generator) -> str:
    return IMAGE_SUFFIXES[int(rng.integers(0, len(IMAGE_SUFFIXES)))]


def tile_random(world: World, rng: np.random.Generator, seed: int) -> Case:
    """1-3 files of random bytes with image suffixes: listed as unreadable, never classified."""
    files = {
        f"junk-{i}{suffix_of(rng)}".encode(): random_bytes(rng, 0, 2048)
        for i in range(int(rng.integers(1, 4)))
    }
    refused = {name.decode() for name in files}
    return folder_case(world, "tile-random", seed, files, refused, note="random bytes")


def tile_damaged(world: World, rng: np.random.Generator, seed: int) -> Case:
    """1-3 truncated / bit-flipped / spliced copies of valid JPEG/PNG/TIFF tiles (EuroSAT when present)."""
    files, notes = {}, []
    for i in range(int(rng.integers(1, 4))):
        if world.real_tiles and rng.random() < 0.5:
            source = world.real_tiles[int(rng.integers(0, len(world.real_tiles)))]
            suffix, data = source.suffix, source.read_bytes()
        else:
            suffix = suffix_of(rng)
            data = world.tiles[suffix]
        kind, damaged = mutate(rng, data)
        files[f"damaged-{i}{suffix}".encode()] = damaged
        notes.append(kind)
    return folder_case(world, "tile-damaged", seed, files, note="+".join(notes))


SAVABLE = {  # the modes Pillow writes in each format
    ".png": ("L", "LA", "RGBA", "P", "1", "I;16", "Pt"),
    ".jpg": ("L", "CMYK", "YCbCr"),
    ".tif": ("L", "LA", "RGBA", "P", "1", "CMYK", "I;16", "I", "F"),
}


def tile_eurosat(world: World, rng: np.random.Generator, seed: int) -> Case:
    """Real EuroSAT JPEGs: one intact (must be classified) and 1-3 truncated / bit-flipped / spliced."""
    pick = rng.choice(len(world.real_tiles), 4, replace=False)
    intact = world.real_tiles[int(pick[0])]
    files, notes = {b"intact.jpg": intact.read_bytes()}, []
    for i in range(int(rng.integers(1, 4))):
        kind, damaged = mutate(rng, world.real_tiles[int(pick[i + 1])].read_bytes())
        files[f"damaged-{i}.jpg".encode()] = damaged
        notes.append(kind)
    case = folder_case(world, "tile-eurosat", seed, files, note=f"{intact.name}; " + "+".join(notes))
    out = Path(case.argv[case.argv.index("--out") + 1])
    case.checks[0] = folder_csv(out, {"valid-0000.png", "intact.jpg"}, set())
    return case


ODD_MODES = ("L", "LA", "RGBA", "P", "1", "CMYK", "I;16", "I", "F", "Pt", "YCbCr")


def odd_tile(rng: np.random.Generator) -> tuple[str, bytes, str]:
    """A valid image in an odd mode/size: (suffix, bytes, what it is)."""
    height, width = (int(v) for v in rng.integers(1, 200, 2))
    if rng.random() < 0.15:
        height, width = 1, int(rng.integers(1, 5000))  # a 1-pixel strip
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mode = ODD_MODES[int(rng.integers(0, len(ODD_MODES)))]
    choices = [suffix for suffix, modes in SAVABLE.items() if mode in modes]
    suffix = choices[int(rng.integers(0, len(choices)))]
    return suffix, _encode_mode(pixels, suffix, mode), f"{mode} {width}x{height}{suffix}"


def _encode_mode(pixels: np.ndarray, suffix: str, mode: str) -> bytes:
    if mode == "I;16":
        image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)  # 2-D uint16: mode I;16
    elif mode in ("I", "F"):
        image = Image.fromarray(pixels).convert("L").convert(mode)
    else:
        image = Image.fromarray(pixels).convert(mode[0] if mode == "Pt" else mode)
    params = {"transparency": 0} if mode == "Pt" else {}  # Pt: paletted with a transparent index
    buffer = io.BytesIO()
    image.save(buffer, format={".jpg": "JPEG", ".png": "PNG", ".tif": "TIFF"}[suffix], **params)
    return buffer.getvalue()


def multiband_tiff(rng: np.random.Generator, bands: int) -> bytes:
    """A plain TIFF with ``bands`` uint8/uint16 bands (2 or 4: not RGB), written with rasterio."""
    from rasterio.io import MemoryFile

    dtype = "uint16" if rng.random() < 0.5 else "uint8"
    size = int(rng.integers(8, 80))
    data = rng.integers(0, 255, (bands, size, size)).astype(dtype)
    with warnings.catch_warnings(), MemoryFile() as memory:
        warnings.simplefilter("ignore")  # no geotransform: a plain TIFF on purpose
        with memory.open(driver="GTiff", width=size, height=size, count=bands, dtype=dtype) as dst:
            dst.write(data)
        return memory.read()


def tile_mode(world: World, rng: np.random.Generator, seed: int) -> Case:
    """Valid images in odd modes (grayscale, RGBA, 16-bit, paletted, 1-bit, CMYK, float, 2/4-band TIFF)
    and sizes (1 px strips): classified or listed as unreadable, never a crash."""
    files, notes = {}, []
    for i in range(int(rng.integers(1, 4))):
        if rng.random() < 0.2:
            bands = int(rng.choice([2, 4]))
            files[f"bands{bands}-{i}.tif".encode()] = multiband_tiff(rng, bands)
            notes.append(f"{bands}-band tif")
        else:
            suffix, data, what = odd_tile(rng)
            files[f"odd-{i}{suffix}".encode()] = data
            notes.append(what)
    return folder_case(world, "tile-mode", seed, files, note=", ".join(notes))


ODD_NAME_PARTS = (b"\xff\xfe", b"caf\xe9", b"new\nline", b"com,ma", b'quo"te', b"semi;colon", b"tab\there",
                  b"-dash", b" space ", "日本".encode(), b"back\\slash", b"'single'", b"\r")  # fmt: skip


def odd_name(rng: np.random.Generator, index: int) -> bytes:
    """A file name (bytes) with odd parts: non-UTF-8 bytes, newlines, commas, quotes, or very long."""
    parts = [ODD_NAME_PARTS[int(i)] for i in rng.integers(0, len(ODD_NAME_PARTS), int(rng.integers(1, 4)))]
    name = b"".join(parts) + str(index).encode()
    if rng.random() < 0.2:
        name = name + b"x" * (240 - len(name))  # near the 255-byte limit of most file systems
    return name + (b".png" if rng.random() < 0.7 else b".jpg")


def tile_name(world: World, rng: np.random.Generator, seed: int) -> Case:
    """Valid tiles with odd names: every one classified, one CSV row each (names written losslessly)."""
    files = {odd_name(rng, i): world.valid_tile(i % 4, ".png") for i in range(int(rng.integers(1, 4)))}
    case = folder_case(world, "tile-name", seed, files, note=" | ".join(ascii(n) for n in files))
    out = Path(case.argv[case.argv.index("--out") + 1])
    tiles = os.fsencode(case.argv[case.argv.index("--out") - 1])
    paths = [os.path.join(tiles, name) for name in [b"valid-0000.png", *files]]
    case.checks = [folder_rows(out, paths), *case.checks[1:]]
    return case


TILE_BOMBS = (  # (name, width, height): declared sizes; the files hold a few hundred bytes
    ("bomb-60000.png", 60000, 60000),
    ("bomb-65500.jpg", 65500, 65500),
    ("bomb-1e6.tif", 1_000_000, 1_000_000),
    ("bomb-12000.png", 12000, 12000),  # 144 Mpx: under Pillow's own bomb error, so only a cap stops it
    ("bomb-12000.jpg", 12000, 12000),
)


def tile_bomb(world: World, rng: np.random.Generator, seed: int) -> Case:
    """A few-hundred-byte PNG / JPEG / TIFF declaring 144 Mpx to 10^12 px in a tile folder (memory-bound):
    listed as unreadable (exit 3) within the memory budget."""
    name, width, height = TILE_BOMBS[seed % len(TILE_BOMBS)]
    maker = {".png": png_bomb, ".jpg": jpeg_bomb, ".tif": lambda w, h: tiff_bomb(w, h, geo=False)}
    data = maker[name[-4:]](width, height)
    return folder_case(world, "tile-bomb", seed, {name.encode(): data}, {name}, memory=True, note=name)


SPECIAL_FILES = ("fifo", "dangling symlink", "symlink loop", "folder named .png", "symlink to /dev/zero",
                 "symlink to /dev/urandom", "sparse 8 GiB file", "symlink to its own folder")  # fmt: skip


def _make_special(folder: Path, kind: str, index: int) -> str:
    """Create one special entry in ``folder``; returns its name."""
    name = f"special-{index}.png"
    path = folder / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling symlink":
        path.symlink_to(folder / "does-not-exist.png")
    elif kind == "symlink loop":
        path.symlink_to(path)
    elif kind == "folder named .png":
        path.mkdir()
    elif kind.startswith("symlink to /dev/"):
        path.symlink_to(kind.split(" ")[-1])
    elif kind == "sparse 8 GiB file":
        with open(path, "wb") as handle:
            handle.truncate(8 << 30)
    else:
        name = f"loop-{index}"
        (folder / name).symlink_to(folder, target_is_directory=True)
    return name


def tile_special(world: World, rng: np.random.Generator, seed: int) -> Case:
    """Special entries among the tiles (a FIFO, dangling / looping symlinks, links to /dev/zero, a folder
    named like an image, a sparse 8 GiB file, a link back to the folder): listed or ignored, never a
    hang, a crash or unbounded reading (memory-bound)."""
    case = folder_case(world, "tile-special", seed, {}, memory=True)
    tiles = Path(case.argv[case.argv.index("--out") - 1])
    kinds = [SPECIAL_FILES[seed % len(SPECIAL_FILES)]]
    if seed >= len(SPECIAL_FILES):
        kinds += [SPECIAL_FILES[int(i)] for i in rng.integers(0, len(SPECIAL_FILES), 2)]
    refused = {_make_special(tiles, kind, i) for i, kind in enumerate(kinds)}
    out = Path(case.argv[case.argv.index("--out") + 1])
    case.checks[0] = folder_csv(out, {"valid-0000.png"}, refused)
    case.note = ", ".join(kinds)
    return case
