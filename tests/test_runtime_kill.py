"""Issue 9, item 5: ``kill -9`` during ``rfmml-infer`` leaves every output absent or complete, and the
previous outputs intact; the next run removes the killed run's temporaries (item 8)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runtime_fixtures import colour_pair, uniform_tile, write_geotiff

rasterio = pytest.importorskip("rasterio")

ROWS, COLS = 60, 80  # 4800 tiles, one per model call: about a second, then a second of writing


def outputs(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def assert_complete(folder: Path) -> None:
    """Every final output is readable whole (a temporary may lie beside them)."""
    with rasterio.open(folder / "map.tif") as ds:
        assert ds.read(1).shape == (ROWS, COLS)
    assert "</PAMDataset>" in (folder / "map.tif.aux.xml").read_text()
    with (folder / "map.csv").open() as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == ROWS * COLS
    with Image.open(folder / "look.png") as image:
        image.load()


def start(argv: list[str]) -> subprocess.Popen:
    code = "import sys; from rfmml.runtime.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def kill_after(process: subprocess.Popen, needle: str, delay: float) -> None:
    """SIGKILL ``process`` ``delay`` seconds after its stderr shows ``needle`` (a progress line)."""
    for line in process.stderr:
        if needle in line:
            break
    time.sleep(delay)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def test_kill_9_mid_scene_and_while_writing(tmp_path):
    model = colour_pair(tmp_path)
    labels = np.arange(ROWS * COLS).reshape(ROWS, COLS) % 4
    tiles = [np.concatenate([uniform_tile(v) for v in row], axis=1) for row in labels]
    scene = write_geotiff(tmp_path / "scene.tif", np.concatenate(tiles))
    out = tmp_path / "out"
    out.mkdir()
    argv = [
        "--model",
        str(model),
        str(scene),
        "--out",
        str(out / "map.tif"),
        "--quicklook",
        str(out / "look.png"),
        "--quicklook-size",
        "4096",
        "--batch",
        "1",
    ]
    first = start([*argv, "--head", "proto"])
    assert first.wait(timeout=300) == 0, first.stderr.read()
    previous = outputs(out)
    assert_complete(out)
    # killed mid-classification, then between classifying and renaming (the big quick-look takes a while)
    for needle, delay in (("%)", 0.0), ("tiles (100%)", 0.3)):
        run = start([*argv, "--head", "svm"])
        kill_after(run, needle, delay)
        now = outputs(out)
        finals = {name: data for name, data in now.items() if ".rfmml-infer." not in name}
        assert sorted(finals) == sorted(previous)  # nothing absent, nothing extra
        assert_complete(out)
        if needle == "%)":
            assert run.returncode == -signal.SIGKILL
            assert finals == previous  # killed before any rename: the previous outputs, byte for byte
        else:  # usually killed while writing: its temporaries stay until the next run
            print("exit", run.returncode, "temporaries left:", sorted(set(now) - set(finals)))
    last = start([*argv, "--head", "svm"])
    assert last.wait(timeout=300) == 0, last.stderr.read()
    assert [name for name in os.listdir(out) if ".rfmml-infer." in name] == []  # stale ones removed
    assert_complete(out)
    assert outputs(out)["map.csv"] != previous["map.csv"]  # the svm run's scores
