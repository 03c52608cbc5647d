"""Tile folders: recursive, every image kind decoded as in training, unreadable files reported."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image
from runtime_fixtures import colour_pair, uniform_tile

from rfmml.runtime import Classifier, load_tile
from rfmml.runtime.cli import main
from rfmml.runtime.folder import write_folder_csv


@pytest.fixture
def tiles(tmp_path):
    root = tmp_path / "tiles"
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(uniform_tile(0, (64, 64))).save(root / "red.jpg", quality=95)
    Image.fromarray(uniform_tile(1, (20, 20))).save(root / "sub" / "green.png")  # resized up
    rgba = np.concatenate([uniform_tile(2), np.full((32, 32, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(root / "sub" / "blue_rgba.png")
    wide = uniform_tile(3).astype(np.uint16) * 257  # 16-bit, same colour once rescaled
    Image.fromarray(wide[:, :, 0]).save(root / "sub" / "deeper" / "gray16.tif")  # gray 16-bit
    Image.fromarray(uniform_tile(0, (64, 64))).save(root / "truncated.jpg")
    data = (root / "truncated.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "text.jpg").write_text("this is a text file with an image suffix\n")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image\n")
    (root / ".hidden.png").write_bytes(b"")
    return root


def test_folder_reports_bad_files_and_classifies_the_rest(tmp_path, tiles):
    clf = Classifier.load(colour_pair(tmp_path))
    result = clf.classify_folder(tiles, batch=2, workers=2)
    names = {
        p.name: clf.class_names[int(label)]
        for p, label in zip(result.paths, result.labels[:, 0], strict=True)
    }
    assert names["red.jpg"] == "red"
    assert names["green.png"] == "green"
    assert names["blue_rgba.png"] == "blue"
    assert "gray16.tif" in names  # gray 16-bit decoded (replicated, rescaled) and classified
    failed = {p.name: reason for p, reason in result.failed}
    assert set(failed) == {"truncated.jpg", "text.jpg", "empty.png"}
    assert failed["empty.png"] == "empty file"
    assert "not an image" in failed["text.jpg"]
    assert "truncated" in failed["truncated.jpg"] or "corrupt" in failed["truncated.jpg"]
    assert [p.name for p in result.ignored] == ["notes.txt"]
    assert sum(result.counts().values()) == 4
    text = "\n".join(result.summary_lines())
    for name in ("truncated.jpg", "text.jpg", "empty.png", "notes.txt"):
        assert name in text


def test_same_pixels_as_training_decode(tmp_path, tiles):
    clf = Classifier.load(colour_pair(tmp_path))
    result = clf.classify_folder(tiles, top_k=4)
    for path, top, scores in zip(result.paths, result.labels, result.scores, strict=True):
        expected_top, expected_scores = clf.predict_topk(load_tile(path, clf.input_size).pixels, 4)
        assert top.tolist() == expected_top[0].tolist()
        np.testing.assert_allclose(scores, expected_scores[0], atol=1e-5)  # batch size changes rounding


def test_cli_folder_csv_and_exit_code(tmp_path, tiles, capsys):
    model = colour_pair(tmp_path)
    out = tmp_path / "pred.csv"
    assert main(["--model", str(model), str(tiles), "--out", str(out), "--batch", "3", "-q"]) == 3
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 7
    header = list(rows[0])
    assert header == [
        "path",
        "class",
        "score",
        "top2_class",
        "top2_score",
        "top3_class",
        "top3_score",
        "error",
    ]
    by_name = {r["path"].split("/")[-1]: r for r in rows}
    assert by_name["red.jpg"]["class"] == "red" and by_name["red.jpg"]["error"] == ""
    assert by_name["empty.png"]["class"] == "" and by_name["empty.png"]["error"] == "empty file"
    printed = capsys.readouterr().out
    assert "providers in use: ['CPUExecutionProvider']" in printed and "could not be read" in printed
    # a clean folder exits 0, with the CSV on stdout
    clean = tmp_path / "clean"
    clean.mkdir()
    Image.fromarray(uniform_tile(1)).save(clean / "a.png")
    assert main(["--model", str(model), str(clean), "-q"]) == 0
    captured = capsys.readouterr()
    (row,) = list(csv.DictReader(io.StringIO(captured.out)))
    assert row["path"].endswith("a.png") and row["class"] == "green" and row["top2_class"]
    assert "1 images classified" in captured.err


def test_empty_folder(tmp_path):
    clf = Classifier.load(colour_pair(tmp_path))
    (tmp_path / "nothing").mkdir()
    result = clf.classify_folder(tmp_path / "nothing")
    assert result.paths == [] and result.labels.shape == (0, 3)
    buffer = io.StringIO()
    write_folder_csv(result, buffer)
    assert buffer.getvalue().startswith("path,class,score")
