"""Several scenes in one run without Dask (issue 13): the serial path of ``rfmml-infer SCENE... --out
FOLDER`` and ``classify_scenes``: output names and bytes as the single-scene path, the summary, exit 3
for a failed scene, and the skip rule of reruns (what "complete" means: runtime/scene_record.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from archive_fixtures import make_archive

from rfmml.runtime import classify_scenes
from rfmml.runtime.cli import main
from rfmml.runtime.cli_shell import EXIT_OK, EXIT_PARTIAL, EXIT_USER

rasterio = pytest.importorskip("rasterio")


@pytest.fixture
def archive(tmp_path):
    return make_archive(tmp_path / "in")


def _infer(*argv) -> int:
    return main(["--providers", "cpu", "-q", *map(str, argv)])


def _read_map(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_serial_run_matches_single_scene_path_and_reports_the_corrupt_scene(
    archive, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "maps"
    code = _infer("--model", archive.model, *archive.all_scenes, "--out", out)
    printed = capsys.readouterr().out
    assert code == EXIT_PARTIAL
    assert "4 scene(s) in this process: 3 classified, 0 skipped (already complete), 1 failed" in printed
    failed = [line for line in printed.splitlines() if line.startswith("  failed ")]
    assert len(failed) == 1 and "corrupt.tif" in failed[0] and "read failed" in failed[0]
    for scene, expected in zip(archive.scenes, archive.expected, strict=True):
        np.testing.assert_array_equal(_read_map(out / f"{scene.stem}_classmap.tif"), expected)
    # the single-scene path's default names and bytes (it writes into the current folder)
    single = tmp_path / "single"
    single.mkdir()
    monkeypatch.chdir(single)
    assert _infer("--model", archive.model, archive.scenes[1]) == EXIT_OK
    for name in ("scene1_classmap.tif", "scene1_classmap.tif.aux.xml", "scene1_classmap.csv"):
        assert (single / name).read_bytes() == (out / name).read_bytes(), name
    assert not any(p.name.startswith("corrupt") for p in out.iterdir())
    assert [p for p in out.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_rerun_skips_complete_scenes_and_redoes_the_others(archive, tmp_path):
    out = tmp_path / "maps"
    first = classify_scenes(archive.scenes, model=archive.model, out_dir=out, providers="cpu")
    assert [o.status for o in first.outcomes] == ["ok"] * 3 and first.exit_code == EXIT_OK
    assert [o.process_loads for o in first.outcomes] == [1, 1, 1]  # loaded once, reused
    assert [o.tiles for o in first.outcomes] == [15, 15, 15]
    record = json.loads((out / "scene0_classmap.done.json").read_text())
    assert sorted(record["outputs"]) == [
        "scene0_classmap.csv",
        "scene0_classmap.tif",
        "scene0_classmap.tif.aux.xml",
    ]
    assert record["tiles"] == 15 and record["made_by"]["head"] == "proto"
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    (out / "scene1_classmap.csv").unlink()  # incomplete outputs
    (out / "scene2_classmap.done.json").unlink()  # killed before its record
    seen = []

    def report(outcome, done, total):
        seen.append((outcome.status, done, total))

    again = classify_scenes(archive.scenes, model=archive.model, out_dir=out, providers="cpu", report=report)
    assert [o.status for o in again.outcomes] == ["skipped", "ok", "ok"]
    assert seen == [("skipped", 1, 3), ("ok", 2, 3), ("ok", 3, 3)]
    assert again.outcomes[0].tiles == 15 and again.outcomes[0].class_map == out / "scene0_classmap.tif"
    assert (out / "scene1_classmap.csv").is_file()
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in out.iterdir() if p.name.startswith("scene0"))
    assert "2 classified, 1 skipped (already complete), 0 failed" in again.lines()[0]


@pytest.mark.parametrize("change", ["settings", "head kind", "scene touched", "output edited"])
def test_a_change_makes_the_scene_incomplete(archive, tmp_path, change):
    out = tmp_path / "maps"
    scene = archive.scenes[0]
    classify_scenes([scene], model=archive.model, out_dir=out, providers="cpu")
    options = {"providers": "cpu"}
    if change == "settings":
        options["stride"] = 16
    elif change == "head kind":
        options["head"] = "svm"
    elif change == "scene touched":
        stat = scene.stat()
        os.utime(scene, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    else:
        with open(out / "scene0_classmap.csv", "r+b") as handle:
            handle.write(b"x")  # same size, different bytes
    summary = classify_scenes([scene], model=archive.model, out_dir=out, **options)
    assert [o.status for o in summary.outcomes] == ["ok"]
    same = classify_scenes([scene], model=archive.model, out_dir=out, **options)
    assert [o.status for o in same.outcomes] == ["skipped"]


def test_one_scene_into_an_existing_folder_is_a_multi_scene_run(archive, tmp_path, capsys):
    out = tmp_path / "maps"
    out.mkdir()
    assert _infer("--model", archive.model, archive.scenes[0], "--out", out) == EXIT_OK
    assert "[1/1] ok " in capsys.readouterr().out
    assert (out / "scene0_classmap.done.json").is_file()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no out", "several scenes need --out FOLDER"),
        ("csv", "--csv name one file"),
        ("out is a file", "--out must be a folder"),
        ("same stem", "would write the same outputs"),
        ("twice", "is given twice"),
        ("a folder", "is a folder: a multi-scene run takes scene files"),
        ("missing", "input not found"),
        ("svm without one", "no SVM head"),
    ],
)
def test_bad_multi_scene_runs_are_one_line_exit_2(archive, tmp_path, capsys, case, message):
    scenes = [str(p) for p in archive.scenes[:2]]
    out = ["--out", str(tmp_path / "maps")]
    other = tmp_path / "other"
    other.mkdir()
    (other / "scene0.png").write_bytes(b"")
    argv = {
        "no out": scenes,
        "csv": [*scenes, *out, "--csv", str(tmp_path / "t.csv")],
        "out is a file": [*scenes, "--out", str(archive.model)],
        "same stem": [*scenes, str(other / "scene0.png"), *out],
        "twice": [*scenes, scenes[0], *out],
        "a folder": [*scenes, str(other), *out],
        "missing": [*scenes, str(tmp_path / "nope.tif"), *out],
        "svm without one": [*scenes, *out, "--head", "svm"],
    }[case]
    model = archive.model
    if case == "svm without one":
        from runtime_fixtures import colour_pair

        (tmp_path / "proto_only").mkdir()
        model = colour_pair(tmp_path / "proto_only", with_svm=False)
    code = _infer("--model", model, *argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == EXIT_USER, err
    assert len(err) == 1 and err[0].startswith("rfmml-infer: error: ") and message in err[0], err
    assert not (tmp_path / "maps").exists() or not any((tmp_path / "maps").iterdir())


def test_dask_not_installed_names_the_extra(archive, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    code = _infer(
        "--model", archive.model, *archive.scenes, "--out", tmp_path / "maps", "--dask", "tcp://x:1"
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USER and len(err) == 1
    assert (
        err[0] == 'rfmml-infer: error: --dask needs Dask\'s distributed scheduler: pip install "rfmml[dask]"'
    )


def test_serial_multi_scene_run_imports_no_dask(archive, tmp_path):
    code = (
        "import sys\nfrom rfmml.runtime.cli import main\nimport rfmml.runtime as r\n"
        "code = main(sys.argv[1:])\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "assert not {'dask', 'distributed', 'torch'} & loaded, 'heavy import'\n"
        "sys.exit(code)"
    )
    argv = ["--model", str(archive.model), *map(str, archive.scenes), "--out", str(tmp_path / "m"), "-q"]
    probe = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert probe.returncode == EXIT_OK, probe.stderr
    assert "3 classified" in probe.stdout


def test_a_bug_on_one_scene_fails_that_scene_only_unless_debugging(archive, tmp_path, monkeypatch):
    from rfmml.runtime.classifier import Classifier

    real = Classifier.classify_scene

    def flaky(self, path, **options):
        if path.name == "scene1.tif":
            raise RuntimeError("boom\nsecond line")
        return real(self, path, **options)

    monkeypatch.setattr(Classifier, "classify_scene", flaky)
    summary = classify_scenes(archive.scenes, model=archive.model, out_dir=tmp_path / "m", providers="cpu")
    assert [o.status for o in summary.outcomes] == [
        "ok",
        "failed",
        "ok",
    ] and summary.exit_code == EXIT_PARTIAL
    assert summary.failed[0].reason == (
        "internal error: RuntimeError: boom; second line (RFMML_DEBUG=1 for the traceback)"
    )
    monkeypatch.setenv("RFMML_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        classify_scenes(archive.scenes, model=archive.model, out_dir=tmp_path / "d", providers="cpu")
