"""Issue 9, items 2, 5 and 8: outputs all or nothing, previous outputs never destroyed, stale
temporaries removed, file names that are not UTF-8 written losslessly."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runtime_fixtures import colour_pair, uniform_tile

from rfmml.runtime.atomic_files import host_token
from rfmml.runtime.cli import main
from rfmml.runtime.errors import OutputError
from rfmml.runtime.output_files import StagedOutputs, path_text


def name_from_text(text: str) -> bytes:
    """The inverse of path_text on POSIX: ``\\\\`` -> backslash, ``\\xNN`` -> that byte."""
    out = bytearray()
    for piece in re.split(r"(\\\\|\\x[0-9a-f]{2})", text):
        if piece == "\\\\":
            out += b"\\"
        elif re.fullmatch(r"\\x[0-9a-f]{2}", piece):
            out.append(int(piece[2:], 16))
        else:
            out += piece.encode("utf-8")
    return bytes(out)


def temporaries(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if ".rfmml-infer." in name)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.skipif(os.sep != "/", reason="POSIX file names are bytes")
def test_path_text_is_lossless():
    for raw in [b"plain.png", b"caf\xc3\xa9.png", b"\xff\xfe.png", b"back\\slash\\xff.png", b"mix\xe9\\.png"]:
        text = path_text(os.fsdecode(raw))
        text.encode("utf-8")  # always valid UTF-8
        assert name_from_text(text) == raw
    assert path_text("café/tile.png") == "café/tile.png"  # valid names unchanged


def test_non_utf8_file_name_in_a_tile_folder(tmp_path, capsys):
    model = colour_pair(tmp_path)
    folder = tmp_path / "tiles"
    folder.mkdir()
    odd = os.path.join(os.fsencode(folder), b"tile_\xff\xfe.png")
    Image.fromarray(uniform_tile(0)).save(os.fsdecode(odd), format="PNG")
    Image.fromarray(uniform_tile(1)).save(folder / "z_ok.png")
    out = tmp_path / "pred.csv"
    out.write_text("the previous predictions\n")
    assert main(["--model", str(model), str(folder), "--out", str(out), "-q"]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))  # valid UTF-8 throughout
    assert [row["class"] for row in rows] == ["red", "green"]
    assert name_from_text(rows[0]["path"]) == odd
    assert "2 images classified" in capsys.readouterr().out
    assert temporaries(tmp_path) == []


def test_failed_run_keeps_the_previous_csv(tmp_path, monkeypatch, capsys):
    import rfmml.runtime.folder as folder_module

    model = colour_pair(tmp_path)
    folder = tmp_path / "tiles"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(uniform_tile(i % 4)).save(folder / f"{i}.png")
    out = tmp_path / "pred.csv"
    out.write_text("the previous predictions\n")

    def half_then_full_disk(result, handle):
        handle.write("path,class\npartial,")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(folder_module, "write_folder_csv", half_then_full_disk)
    assert main(["--model", str(model), str(folder), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rfmml-infer: error: cannot write {out}: No space left on device"]
    assert out.read_text() == "the previous predictions\n" and temporaries(tmp_path) == []


def test_staged_outputs_are_renamed_together_or_not_at_all(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("old a")
    second.write_text("old b")
    with pytest.raises(OutputError, match="cannot write .*b.txt: disk full"):
        with StagedOutputs() as staged:
            staged.write(first, lambda tmp: tmp.write_text("new a"))
            assert first.read_text() == "old a" and len(temporaries(tmp_path)) == 1
            staged.write(second, lambda tmp: (_ for _ in ()).throw(OSError(28, "disk full")))
    assert (first.read_text(), second.read_text()) == ("old a", "old b") and temporaries(tmp_path) == []
    with StagedOutputs() as staged:
        staged.write(first, lambda tmp: tmp.write_text("new a"))
        staged.write(second, lambda tmp: tmp.write_text("new b"))
    assert (first.read_text(), second.read_text()) == ("new a", "new b") and temporaries(tmp_path) == []


def test_staged_outputs_remove_stale_temporaries_of_killed_runs_and_nothing_else(tmp_path):
    dead, alive = dead_pid(), os.getppid()
    stale = tmp_path / f".map.tif.rfmml-infer.{dead}-3.tmp"
    stale_sidecar = tmp_path / f".map.tif.rfmml-infer.{dead}-3.tmp.aux.xml"
    running = tmp_path / f".map.csv.rfmml-infer.{alive}-1.tmp"
    others = [
        tmp_path / ".map.tif.tmp",
        tmp_path / f".last.pt.rfmml-train.{dead}-1.tmp",
        tmp_path / "map.tif",
    ]
    for path in [stale, stale_sidecar, running, *others]:
        path.write_bytes(b"x")
    with StagedOutputs() as staged:
        staged.write(tmp_path / "map.png", lambda tmp: tmp.write_bytes(b"png"))
        assert temporaries(tmp_path)[-1].startswith(f".map.png.rfmml-infer.{host_token()}.{os.getpid()}-")
    assert not stale.exists() and not stale_sidecar.exists()
    assert running.exists() and all(path.exists() for path in others)
    assert (tmp_path / "map.png").read_bytes() == b"png"


def test_next_run_removes_stale_temporaries(tmp_path):
    model = colour_pair(tmp_path)
    folder = tmp_path / "tiles"
    folder.mkdir()
    Image.fromarray(uniform_tile(3)).save(folder / "a.png")
    stale = tmp_path / f".pred.csv.rfmml-infer.{dead_pid()}-1.tmp"
    stale.write_text("half a csv")
    assert main(["--model", str(model), str(folder), "--out", str(tmp_path / "pred.csv"), "-q"]) == 0
    assert not stale.exists() and temporaries(tmp_path) == []


FULL_DISK = textwrap.dedent(
    """
    import resource, sys
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # writes beyond: EFBIG (SIGXFSZ is ignored)
    from rfmml.runtime.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def test_full_disk_during_scene_outputs_leaves_the_previous_ones(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from runtime_fixtures import write_geotiff

    model = colour_pair(tmp_path)
    labels = np.arange(40 * 40).reshape(40, 40) % 4
    pixels = np.concatenate([np.concatenate([uniform_tile(v) for v in row], axis=1) for row in labels])
    scene = write_geotiff(tmp_path / "scene.tif", pixels)
    out = tmp_path / "out" / "map.tif"
    out.parent.mkdir()
    argv = ["--model", str(model), str(scene), "--out", str(out), "--quicklook", str(tmp_path / "out/q.png")]
    assert main([*argv, "-q", "--top-k", "1"]) == 0
    before = {name: (out.parent / name).read_bytes() for name in os.listdir(out.parent)}
    assert sorted(before) == ["map.csv", "map.tif", "map.tif.aux.xml", "q.png"]
    assert len(before["map.csv"]) < 120_000  # the top-3 CSV of the second run is larger
    probe = subprocess.run(
        [sys.executable, "-c", FULL_DISK, "120000", *argv, "-q"], capture_output=True, text=True, timeout=300
    )
    lines = probe.stderr.strip().splitlines()
    assert probe.returncode == 2 and len(lines) == 1, probe.stderr
    assert lines[0].startswith(f"rfmml-infer: error: cannot write {out.parent / 'map.csv'}"), lines
    after = {name: (out.parent / name).read_bytes() for name in os.listdir(out.parent)}
    assert after == before  # nothing half-written, nothing lost, no temporary left
    with rasterio.open(out) as ds:
        assert ds.read(1).shape == (40, 40)


def test_non_utf8_scene_and_model_names(tmp_path, capsys):
    pytest.importorskip("rasterio")
    from runtime_fixtures import write_geotiff

    odd = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"m\xe9")))
    odd.mkdir()
    model = colour_pair(odd)  # onnxruntime is given the model's bytes
    Image.fromarray(np.tile(uniform_tile(2), (2, 2, 1))).save(odd / "sc\udcffene.png")  # Pillow: any name
    out = odd / "map.png"
    assert main(["--model", str(model), str(odd / "sc\udcffene.png"), "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert f"model {path_text(model)} (4 classes" in printed and "\\xe9/sc\\xffene.png" in printed
    with out.with_suffix(".csv").open(encoding="utf-8") as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == 4
    scene = write_geotiff(tmp_path / "scene.tif", np.tile(uniform_tile(2), (2, 2, 1)))
    geotiff = odd / "scene.tif"
    geotiff.write_bytes(scene.read_bytes())
    for argv in ([str(geotiff), "--out", str(tmp_path / "m.tif")], [str(scene), "--out", str(odd / "m.tif")]):
        assert main(["--model", str(model), *argv]) == 2  # GDAL takes UTF-8 names only: one line
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "needs file names in UTF-8; rename it" in err[0] and "m\\xe9" in err[0]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_unwritable_output_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    import rfmml.runtime.classifier as classifier

    model = colour_pair(tmp_path)
    folder = tmp_path / "tiles"
    folder.mkdir()
    Image.fromarray(uniform_tile(1)).save(folder / "a.png")
    monkeypatch.setattr(classifier.Classifier, "load", None)  # loading the model would be work
    target = Path("/proc/pred.csv")  # a folder nobody can create files in, not even root
    assert main(["--model", str(model), str(folder), "--out", str(target), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rfmml-infer: error: cannot write in /proc: "), err
