"""Issue 9, items 3 and 6: tiny inputs that declare huge sizes and absurd flags are one line, exit 2.

The memory cases run ``rfmml-infer`` in a subprocess under an address-space limit (RLIMIT_AS), so a
regression fails the test (MemoryError, exit 1) instead of exhausting the machine.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runtime_fixtures import colour_pair, uniform_tile

from rfmml.runtime.cli import main
from rfmml.runtime.imageio import MAX_TILE_PIXELS, read_rgb
from rfmml.runtime.scene import MAX_GRID_TILES

ADDRESS_SPACE = 3 * 2**30  # far below what any of the bombs below would need decoded

RUN_LIMITED = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
    from rfmml.runtime.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes: a valid PNG header declaring ``width x height`` RGB, and almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def run_limited(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUN_LIMITED, str(ADDRESS_SPACE), *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_exit_2(probe: subprocess.CompletedProcess, *needles: str) -> None:
    lines = probe.stderr.strip().splitlines()
    assert probe.returncode == 2, probe.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("rfmml-infer: error:"), lines
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(("width", "height"), [(60000, 60000), (13400, 13400), (5000, 5000)])
def test_tile_declaring_too_many_pixels_is_refused_from_its_header(tmp_path, width, height):
    bomb = png_declaring(tmp_path / "bomb.png", width, height)
    assert bomb.stat().st_size < 300 and width * height > MAX_TILE_PIXELS
    with pytest.raises(ValueError, match=f"too large for a tile.*{MAX_TILE_PIXELS} px"):
        read_rgb(bomb)


def test_folder_with_pixel_bombs_lists_them_and_classifies_the_rest(tmp_path):
    model = colour_pair(tmp_path)
    folder = tmp_path / "tiles"
    folder.mkdir()
    png_declaring(folder / "a_60000.png", 60000, 60000)  # 3.6 Gpx (10.8 GB decoded)
    png_declaring(folder / "b_179mpx.png", 13400, 13400)  # 179 Mpx
    Image.fromarray(uniform_tile(2)).save(folder / "c_fine.png")
    out = tmp_path / "pred.csv"
    probe = run_limited("--model", str(model), str(folder), "--out", str(out), "-q")
    assert probe.returncode == 3, probe.stderr  # finished, two files skipped
    text = out.read_text()
    assert text.count("too large for a tile") == 2 and "c_fine.png,blue," in text


def test_png_scene_declaring_60000_squared_is_one_line(tmp_path):
    model = colour_pair(tmp_path)
    scene = png_declaring(tmp_path / "scene.png", 60000, 60000)
    probe = run_limited("--model", str(model), str(scene), "--out", str(tmp_path / "map.png"))
    assert_one_line_exit_2(probe, "scene.png", "60000x60000 px", "tiled GeoTIFF")
    assert not (tmp_path / "map.png").exists()


def test_geotiff_declaring_a_million_squared_is_one_line(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    model = colour_pair(tmp_path)
    scene = tmp_path / "huge.tif"
    profile = dict(driver="GTiff", width=10**6, height=10**6, count=3, dtype="uint8", tiled=True)
    profile.update(blockxsize=4096, blockysize=4096, compress="deflate", sparse_ok=True)
    with rasterio.open(scene, "w", **profile):
        pass  # no block written: a tiny file declaring 10^12 px
    assert scene.stat().st_size < 2**22
    probe = run_limited("--model", str(model), str(scene), "--out", str(tmp_path / "map.tif"))
    assert_one_line_exit_2(probe, "huge.tif", "1000000x1000000 px", f"limit of {MAX_GRID_TILES}")


def test_grid_cap_counts_tiles_not_pixels(tmp_path):
    from rfmml.runtime.errors import InputError
    from rfmml.runtime.scene import scene_grid

    grid = scene_grid(2048 * 64, 2048 * 64, (64, 64), None, tmp_path / "s.tif")
    assert grid.n_tiles == MAX_GRID_TILES  # exactly the cap is allowed
    with pytest.raises(InputError, match="use a larger --tile/--stride"):
        scene_grid(2048 * 64, 2048 * 64 + 1, (64, 64), None, tmp_path / "s.tif")


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [("--batch", "100000000", "--batch"), ("--tile", "100000", "--tile"), ("--stride", "0", "--stride"),
     ("--top-k", "1000", "--top-k"), ("--quicklook-size", "10", "--quicklook-size")],
)  # fmt: skip
def test_absurd_flags_are_one_line_exit_2(tmp_path, capsys, flag, value, needle):
    model = colour_pair(tmp_path)
    assert main(["--model", str(model), str(tmp_path), flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rfmml-infer: error:") and needle in err[0]


def test_threads_beyond_the_cpus_are_capped_with_one_warning(tmp_path, capsys):
    model = colour_pair(tmp_path)
    folder = tmp_path / "tiles"
    folder.mkdir()
    Image.fromarray(uniform_tile(1)).save(folder / "a.png")
    cpus = os.cpu_count() or 1
    assert main(["--model", str(model), str(folder), "--threads", "400", "--workers", "400", "-q"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert warnings == [
        f"rfmml-infer: warning: --threads 400 is more than the {cpus} CPUs here; using {cpus}",
        f"rfmml-infer: warning: --workers 400 is more than the {cpus} CPUs here; using {cpus}",
    ]
    assert ",green," in captured.out


def test_tiny_geotiff_is_still_classified_under_the_limit(tmp_path):
    pytest.importorskip("rasterio")
    from runtime_fixtures import write_geotiff

    model = colour_pair(tmp_path)
    scene = write_geotiff(tmp_path / "s.tif", np.tile(uniform_tile(3), (2, 3, 1)))
    probe = run_limited("--model", str(model), str(scene), "--out", str(tmp_path / "m.tif"), "-q")
    assert probe.returncode == 0, probe.stderr
    assert "yellow   6" in probe.stdout
