"""Bad input exits 2 with one line on stderr; image conversions warn once; the decode cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from rfmml.trainer.cli import main
from rfmml.trainer.data import cache_key, load_part
from rfmml.trainer.split import make_split, scan_folder

FAST = [
    "--backbone",
    "conv4",
    "--image-size",
    "16",
    "--ret-episodes",
    "2",
    "--acf-episodes",
    "2",
    "--val-every",
    "2",
    "--no-progress",
    "--threads",
    "1",
    "--no-cache",
    "--svm-c",
    "1",
]


def _folder(root, counts: dict[str, int], mode: str = "RGB"):
    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).convert(mode).save(root / name / f"{i:03d}.png")
    return root


def _run_bad(args, capsys) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0 and err.startswith("rfmml-train: error: ") and "Traceback" not in err
    return err


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    assert "no class folders" in _run_bad(
        ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "r")], capsys
    )


def test_one_class(tmp_path, capsys):
    data = _folder(tmp_path / "data", {"a": 10})
    assert "only one class" in _run_bad(["--data", str(data), "--out", str(tmp_path / "r")], capsys)


def test_class_with_one_image(tmp_path, capsys):
    data = _folder(tmp_path / "data", {"a": 10, "b": 1})
    assert "'b' has 1 image" in _run_bad(["--data", str(data), "--out", str(tmp_path / "r")], capsys)


def test_corrupt_jpeg(tmp_path, capsys):
    data = _folder(tmp_path / "data", {"a": 12, "b": 12})
    (data / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    err = _run_bad(["--data", str(data), "--out", str(tmp_path / "r"), *FAST, "--train-frac", "0.9"], capsys)
    assert "broken.jpg" in err
    assert not (tmp_path / "r").exists()  # nothing half-made is left behind


def test_unknown_minority_name(tmp_path, capsys):
    data = _folder(tmp_path / "data", {"a": 10, "b": 10})
    err = _run_bad(["--data", str(data), "--out", str(tmp_path / "r"), "--minority", "zebra"], capsys)
    assert "'zebra' is not a class" in err


def test_minority_shots_larger_than_class(tmp_path, capsys):
    data = _folder(tmp_path / "data", {"a": 10, "b": 10})
    err = _run_bad(
        ["--data", str(data), "--out", str(tmp_path / "r"), "--minority", "b", "--minority-shots", "8"],
        capsys,
    )
    assert "larger than class 'b'" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--resume", "nowhere"], "not a run folder"),
        (["--split", "missing.json", "--out", "r"], "split file not found"),
        (["--out", "r", "--backbone", "vgg"], "unknown --backbone 'vgg'"),
        (["--out", "r", "--queries", "0"], "--queries"),
        (["--data", ".", "--out", "r", "--train-frac", "0.5", "--train-per-class", "3"], "not both"),
        (
            ["--out", "r", "--minority", "NoSuchClass"],
            "synthetic set (no --data) has a fixed split; drop --minority",
        ),
        (["--data", ".", "--split", "x.json", "--out", "r", "--minority-shots", "3"], "--split fixes"),
        (["--out", "r", "--backbone", "resnet18", "--weights", "missing.pt"], "weights file not found"),
    ],
)
def test_bad_flags(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert message in _run_bad(args, capsys)


def test_gray_and_rgba_converted_with_one_warning(tmp_path, capsys):
    data = _folder(tmp_path / "data", {"a": 8, "b": 8})
    _folder(data, {"a": 3}, mode="L")  # overwrites 3 files of class a as grayscale
    _folder(data, {"b": 2}, mode="RGBA")
    wide = np.random.default_rng(1).integers(0, 65535, (20, 20), dtype=np.uint16)
    Image.fromarray(wide).save(data / "b" / "sixteen.png")  # 16-bit grayscale
    assert main(["--data", str(data), "--out", str(tmp_path / "r"), *FAST, "--train-frac", "0.5"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "converted 6 image(s)" in warnings[0] and "16-bit" in warnings[0], warnings


def test_load_part_cache(tmp_path):
    data = _folder(tmp_path / "data", {"a": 6, "b": 6})
    split = make_split(scan_folder(data), str(data), 0, train_frac=0.5)
    cache = tmp_path / "cache"
    images, labels = load_part(split, "train", 8, cache_dir=cache)
    assert images.dtype.is_floating_point is False and images.shape == (6, 8, 8, 3)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(list(cache.glob("*.npy"))) == 1
    again, _ = load_part(split, "train", 8, cache_dir=cache)
    assert (again == images).all()
    paths, _ = split.labels_and_paths("train")
    key = cache_key(paths, 8)
    os.utime(paths[0], ns=(1, 1))  # a touched file invalidates the cache
    assert cache_key(paths, 8) != key


def test_synthetic_load_part_matches_dataset():
    from rfmml.trainer.config import TrainConfig
    from rfmml.trainer.run_setup import prepare_split
    from rfmml.trainer.synthetic import make_synthetic_dataset, render_class_tile

    split = prepare_split(TrainConfig(out="x", seed=3))
    assert split.data_root == "synthetic:3" and len(split.minority) == 3
    images, labels = load_part(split, "test", 16)
    all_images, all_labels, names = make_synthetic_dataset(3, 16)
    assert images.shape == (8 * 40, 16, 16, 3) and names == split.classes
    assert labels.bincount().tolist() == [40] * 8
    tile = render_class_tile(0, np.random.default_rng(0), 24)
    assert tile.shape == (24, 24, 3) and tile.dtype == np.uint8


def test_help_lists_examples(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--minority-shots" in out and "Examples:" in out and "rfmml-train --resume" in out
