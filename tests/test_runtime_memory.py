"""Windowed reading keeps memory bounded by the batch, not the scene (measured in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from runtime_fixtures import COLOURS, colour_pair, write_geotiff

rasterio = pytest.importorskip("rasterio")

HEIGHT, WIDTH = 6144, 8192  # 144 MiB of decoded RGB
SCENE_BYTES = HEIGHT * WIDTH * 3

PROBE = textwrap.dedent(
    """
    import json, sys, tracemalloc
    from rfmml.runtime import Classifier

    def status_kib(key):  # VmHWM is this process's peak RSS (ru_maxrss would include the parent's at fork)
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])

    clf = Classifier.load(sys.argv[1], providers="cpu", threads=1)
    clf.classify_scene(sys.argv[3], batch=32)  # warm-up: GDAL drivers, PROJ, the session's arena
    before = status_kib("VmRSS")
    tracemalloc.start()
    result = clf.classify_scene(sys.argv[2], batch=32)
    _, traced_peak = tracemalloc.get_traced_memory()
    peak = status_kib("VmHWM")
    print(json.dumps({"before_kib": before, "peak_kib": peak, "traced_peak": traced_peak,
                      "tiles": int(result.grid.n_tiles), "skipped": result.n_skipped}))
    """
)


def write_large_scene(path: Path) -> Path:
    """A tiled, compressed GeoTIFF written block row by block row (never whole in memory)."""
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = dict(driver="GTiff", width=WIDTH, height=HEIGHT, count=3, dtype="uint8", crs="EPSG:32633")
    profile.update(
        transform=from_origin(500000.0, 5000000.0, 1.0, 1.0), tiled=True, blockxsize=256, blockysize=256
    )
    profile.update(compress="deflate")
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as dst:
        for y in range(0, HEIGHT, 256):
            labels = rng.integers(0, len(COLOURS), WIDTH // 32)
            strip = np.repeat(COLOURS[labels], 32, axis=0)  # [WIDTH, 3]: 32-px wide stripes
            block = np.broadcast_to(strip.T[:, None, :], (3, 256, WIDTH))
            dst.write(np.ascontiguousarray(block), window=Window(0, y, WIDTH, 256))
    return path


def test_scene_memory_is_bounded_by_the_batch(tmp_path):
    model = colour_pair(tmp_path)
    scene = write_large_scene(tmp_path / "large.tif")
    small = write_geotiff(tmp_path / "small.tif", np.full((256, 256, 3), 200, np.uint8))
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(model), str(scene), str(small)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr
    stats = json.loads(probe.stdout.strip().splitlines()[-1])
    assert stats["tiles"] == (HEIGHT // 32) * (WIDTH // 32) and stats["skipped"] == 0
    growth = (stats["peak_kib"] - stats["before_kib"]) * 1024
    # GDAL's block cache is capped by the reader (here 16 MiB); everything else is batch-sized
    message = f"RSS grew by {growth / 2**20:.0f} MiB for a {SCENE_BYTES / 2**20:.0f} MiB scene"
    print(message, f"(numpy/Python peak {stats['traced_peak'] / 2**20:.1f} MiB)")
    assert growth < 48 * 2**20, message
    assert stats["traced_peak"] < 16 * 2**20, f"numpy/Python peak {stats['traced_peak'] / 2**20:.1f} MiB"
