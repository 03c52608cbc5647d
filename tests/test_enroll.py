"""rfmml-enroll (issue 12): a class added, replaced or removed on the edge box with the runtime alone.

The prototype of an enrolled class is exactly (float32) the mean of the onnxruntime embeddings of its
tiles; a removed class is never predicted; the head round-trips with its enrolment record and stays
bound to its model; every bad input is one line, exit 2, nothing written; rfmml-infer and the
quick-look work unchanged on an enrolled head; no torch or scikit-learn is loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runtime_fixtures import NAMES, build_stats_model, colour_pair, uniform_tile, write_head

from rfmml.runtime.artifact import load_head, save_head, sha256_file
from rfmml.runtime.classifier import Classifier
from rfmml.runtime.cli_shell import EXIT_USER
from rfmml.runtime.enroll_cli import main
from rfmml.runtime.enroll_tiles import mean_prototype, tiles_digest
from rfmml.runtime.imageio import load_tile

PURPLE = np.array([150, 30, 160], np.uint8)


def _tiles(folder: Path, colour, n: int = 5, size: int = 40, seed: int = 0) -> Path:
    """``n`` PNG tiles of ``colour`` with noise (so their embeddings differ), ``size`` px: resized."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        noise = rng.integers(-25, 26, size=(size, size, 3))
        pixels = np.clip(np.asarray(colour, np.int64) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"tile{i}.png")
    return folder


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """The colour pair (4 classes, with an SVM part): (model, head)."""
    model = colour_pair(tmp_path)
    return model, model.with_suffix(".npz")


def _enrol(model: Path, *args: str) -> int:
    return main(["--model", str(model), *args])


def test_prototype_is_the_float32_mean_of_the_onnxruntime_embeddings(tmp_path):
    model = build_stats_model(tmp_path / "m.onnx", (32, 32), stats="meanstd")
    write_head(model, np.eye(2, 6, dtype=np.float32), ("a", "b"))
    folder = _tiles(tmp_path / "purple", PURPLE, n=7, size=45)
    assert (
        main(["--model", str(model), "--add", "purple", str(folder), "--out", str(tmp_path / "v2.npz")]) == 0
    )
    head = load_head(tmp_path / "v2.npz")
    clf = Classifier.load(model)
    paths = sorted(folder.iterdir())
    embeddings = clf.embed(np.stack([load_tile(p, (32, 32)).pixels for p in paths]))
    expected = mean_prototype(embeddings)
    assert head.prototypes.dtype == np.float32
    np.testing.assert_array_equal(head.prototypes[2], expected)  # bit for bit
    np.testing.assert_allclose(expected, embeddings.astype(np.float64).mean(0), rtol=1e-6)
    torch_heads = pytest.importorskip("rfmml.trainer.heads")  # export's own mean, for the same embeddings
    fitted = torch_heads.fit_prototypes(embeddings, np.zeros(len(embeddings), np.int64), 1).numpy()
    np.testing.assert_array_equal(fitted[0], expected)
    np.testing.assert_array_equal(head.prototypes[:2], np.eye(2, 6, dtype=np.float32))  # the others kept


def test_added_replaced_and_removed_classes(pair, tmp_path):
    model, head_path = pair
    purple = _tiles(tmp_path / "purple", PURPLE)
    navy = _tiles(tmp_path / "navy", (20, 20, 90), n=3, seed=1)
    out = tmp_path / "v2.npz"
    argv = [
        "--add",
        "purple",
        str(purple),
        "--replace",
        "blue",
        str(navy),
        "--remove",
        "yellow",
        "--out",
        str(out),
    ]
    assert _enrol(model, *argv) == 0
    head = load_head(out)
    assert head.class_names == ("red", "green", "blue", "purple")  # replaced in place, appended, removed
    assert [(e.action, e.class_name) for e in head.enrolments] == [
        ("replace", "blue"), ("add", "purple"), ("remove", "yellow")
    ]  # fmt: skip
    assert head.train_counts.tolist() == [10, 10, 3, 5]
    assert head.majority.tolist() == [True, True, False, False]  # 3 and 5 tiles < the majority's 10
    assert head.onnx_sha256 == sha256_file(model)  # still bound to the same model
    assert not head.has_svm
    clf = Classifier.load(model, out)
    labels, _ = clf.predict(np.stack([uniform_tile(i) for i in range(4)] + [np.full((32, 32, 3), PURPLE)]))
    names = [clf.class_names[i] for i in labels]
    assert names[:2] == ["red", "green"] and names[4] == "purple"
    assert "yellow" not in names and "yellow" not in clf.class_names  # a removed class is never predicted


def test_enrolment_record_round_trips(pair, tmp_path):
    model, head_path = pair
    purple = _tiles(tmp_path / "purple", PURPLE)
    assert _enrol(model, "--add", "purple", str(purple), "--out", str(tmp_path / "v2.npz")) == 0
    assert (
        _enrol(
            model, "--head", str(tmp_path / "v2.npz"), "--remove", "red", "--out", str(tmp_path / "v3.npz")
        )
        == 0
    )
    head = load_head(tmp_path / "v3.npz")
    add, remove = head.enrolments
    files = sorted(purple.iterdir())
    digests = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in files)
    assert (add.action, add.class_name, add.tiles) == ("add", "purple", 5)
    assert add.sha256 == hashlib.sha256("".join(d + "\n" for d in digests).encode()).hexdigest()
    assert (remove.action, remove.class_name, remove.tiles, remove.sha256) == ("remove", "red", 0, "")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", add.date)
    save_head(tmp_path / "again.npz", head)
    again = load_head(tmp_path / "again.npz")
    assert again.enrolments == head.enrolments and again.class_names == head.class_names
    np.testing.assert_array_equal(again.prototypes, head.prototypes)


def test_a_head_written_before_the_record_still_loads_and_enrols(tmp_path):
    """tests/data/head_format1_before_enrolment.npz was written by save_head before this feature."""
    old = load_head(Path(__file__).parent / "data" / "head_format1_before_enrolment.npz")
    rng = np.random.default_rng(12)
    assert old.class_names == ("Forest", "River", "Highway") and old.enrolments == ()
    np.testing.assert_array_equal(old.prototypes, rng.normal(size=(3, 6)).astype(np.float32))
    assert old.has_svm and old.metadata == {"svm": {"C": 1.0}, "run": "before-enrol"}
    from rfmml.runtime.enroll import remove_class

    changed = remove_class(old, "Highway", "2026-11-29T00:00:00Z")
    save_head(tmp_path / "h.npz", changed)
    loaded = load_head(tmp_path / "h.npz")
    assert loaded.class_names == ("Forest", "River") and len(loaded.enrolments) == 1
    assert loaded.metadata == {"run": "before-enrol"}  # the SVM's record went with the SVM


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"enrolment_date": None}, "go together"),
        ({"enrolment_action": np.array(["added"])}, "enrolment_action not in"),
        ({"enrolment_tiles": np.array([-1])}, "negative enrolment_tiles"),
        ({"enrolment_tiles": np.array([1, 2])}, r"enrolment_tiles of shape \(2,\)"),
    ],
)
def test_a_damaged_record_is_refused(pair, tmp_path, changes, match):
    from rfmml.runtime.errors import ArtifactError

    model, _ = pair
    assert _enrol(model, "--remove", "red", "--out", str(tmp_path / "v2.npz")) == 0
    with np.load(tmp_path / "v2.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays.update(changes)
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(ArtifactError, match=match):
        load_head(tmp_path / "bad.npz")


def _bad_cases(tmp: Path, model: Path, head: Path) -> dict[str, tuple[list[str], list[str]]]:
    """case -> (argv after --model, texts the error line must contain)."""
    purple = _tiles(tmp / "purple", PURPLE)
    (tmp / "empty").mkdir()
    (tmp / "empty" / "notes.txt").write_text("not a tile")
    unreadable = tmp / "unreadable"
    unreadable.mkdir()
    (unreadable / "a.jpg").write_bytes(b"not a jpeg")
    (unreadable / "b.png").write_bytes(b"")
    out = ["--out", str(tmp / "new.npz")]
    return {
        "duplicate": (["--add", "red", str(purple), *out], ["'red' is already in the head", "--replace red"]),
        "unknown replace": (["--replace", "mauve", str(purple), *out], ["no class 'mauve'"]),
        "unknown remove": (["--remove", "mauve", *out], ["no class 'mauve'"]),
        "empty folder": (["--add", "x", str(tmp / "empty"), *out], ["no image files", "empty"]),
        "unreadable": (
            ["--add", "x", str(unreadable), *out],
            ["2 of 2", "a.jpg (not an image", "b.png (empty file)"],
        ),
        "missing folder": (["--add", "x", str(tmp / "nope"), *out], ["tile folder not found"]),
        "down to one": (["--remove", "red", "--remove", "green", "--remove", "blue", *out], ["at least 2"]),
        "twice": (["--add", "x", str(purple), "--remove", "x", *out], ["'x' given more than once"]),
        "nothing": (out, ["nothing to do"]),
        "bad name": (["--add", " x", str(purple), *out], ["bad class name"]),
        "over the input": (["--remove", "red", "--out", str(head)], ["is the input head", "--force"]),
        "over the model": (["--remove", "red", "--out", str(model), "--force"], ["is the model file"]),
        "other model": (["--head", str(head), "--remove", "red", *out], ["does not belong to"]),
    }


@pytest.mark.parametrize(
    "case",
    ["duplicate", "unknown replace", "unknown remove", "empty folder", "unreadable", "missing folder",
     "down to one", "twice", "nothing", "bad name", "over the input", "over the model", "other model"],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_nothing_written(pair, tmp_path, capsys, case):
    model, head = pair
    if case == "other model":  # a model of another digest than the head's
        model = build_stats_model(tmp_path / "other.onnx", (32, 32), tag="other")
    argv, texts = _bad_cases(tmp_path, model, head)[case]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    head_bytes = head.read_bytes()
    assert main(["--model", str(model), *argv]) == EXIT_USER
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rfmml-enroll: error: ")]
    assert len(err) == 1, err
    for text in texts:
        assert text in err[0], (text, err[0])
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # nothing written, no temporaries
    assert head.read_bytes() == head_bytes


def test_force_replaces_the_input_head(pair, tmp_path):
    model, head = pair
    assert main(["--model", str(model), "--remove", "yellow", "--out", str(head), "--force"]) == 0
    assert load_head(head).class_names == NAMES[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "model.onnx"]  # no temporaries


def test_the_svm_part_is_dropped_with_a_one_line_notice(pair, tmp_path, capsys):
    model, _ = pair
    assert main(["--model", str(model), "--remove", "yellow", "--out", str(tmp_path / "v2.npz")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "rfmml-enroll: warning: the SVM part of the head is dropped (it cannot follow an enrolment): "
        "the Proto head serves"
    ]
    head = load_head(tmp_path / "v2.npz")
    assert not head.has_svm and "svm" not in head.metadata
    assert main(["--model", str(model), "--head", str(tmp_path / "v2.npz"), "--remove", "blue",
                 "--out", str(tmp_path / "v3.npz")]) == 0  # fmt: skip
    assert "warning" not in capsys.readouterr().err  # no SVM part left: no notice


def test_a_class_with_as_many_tiles_as_the_majority_is_majority(pair, tmp_path):
    model, _ = pair
    purple = _tiles(tmp_path / "purple", PURPLE, n=10)
    assert (
        main(["--model", str(model), "--add", "purple", str(purple), "--out", str(tmp_path / "v2.npz")]) == 0
    )
    assert load_head(tmp_path / "v2.npz").majority.tolist() == [True] * 5
    few = _tiles(tmp_path / "few", PURPLE, n=9)
    argv = ["--model", str(model), "--replace", "red", str(few), "--replace", "green", str(purple)]
    assert main([*argv, "--out", str(tmp_path / "v3.npz")]) == 0
    head = load_head(tmp_path / "v3.npz")  # 9 tiles: below the other majority classes' 10
    assert head.majority.tolist() == [False, True, True, True] and head.train_counts.tolist() == [
        9,
        10,
        10,
        10,
    ]


def test_classifier_enroll_returns_a_new_classifier(pair, tmp_path):
    model, _ = pair
    clf = Classifier.load(model, head="svm")
    purple = np.stack([np.full((32, 32, 3), PURPLE)] * 3)
    with pytest.warns(UserWarning, match="SVM part"):
        enrolled = clf.enroll("purple", purple)
    assert clf.class_names == NAMES and clf.head_kind == "svm"  # the original is unchanged
    assert enrolled.class_names == (*NAMES, "purple") and enrolled.head_kind == "proto"
    np.testing.assert_array_equal(enrolled.head.prototypes[4], mean_prototype(clf.embed(purple)))
    assert enrolled.class_names[int(enrolled.predict(purple[:1])[0][0])] == "purple"
    (record,) = enrolled.head.enrolments
    assert record.tiles == 3 and record.sha256 == tiles_digest(
        [hashlib.sha256(purple[0].tobytes()).hexdigest()] * 3
    )
    smaller = enrolled.remove("red")
    assert smaller.class_names == ("green", "blue", "yellow", "purple")
    save_head(tmp_path / "api.npz", smaller.head)
    assert Classifier.load(model, tmp_path / "api.npz").class_names == smaller.class_names
    replaced = smaller.enroll("blue", np.stack([uniform_tile(0)]), replace=True)  # blue now looks red
    assert replaced.class_names[int(replaced.predict(uniform_tile(0))[0][0])] == "blue"


def test_infer_and_quicklook_work_unchanged_on_an_enrolled_head(pair, tmp_path):
    from test_runtime_scene import mosaic

    from rfmml.runtime.cli import main as infer
    from rfmml.runtime.quicklook import _legend

    model, _ = pair
    purple = _tiles(tmp_path / "purple", PURPLE)
    new_head = tmp_path / "v2.npz"
    assert (
        main(
            [
                "--model",
                str(model),
                "--add",
                "purple",
                str(purple),
                "--remove",
                "yellow",
                "--out",
                str(new_head),
            ]
        )
        == 0
    )
    scene = mosaic(np.array([[0, 1, 2], [2, 1, 0]]))
    scene[32:, 64:] = PURPLE  # the last cell of the second row: the enrolled class
    Image.fromarray(scene).save(tmp_path / "scene.png")
    out = tmp_path / "map.png"
    argv = ["--model", str(model), "--head", str(new_head), str(tmp_path / "scene.png"), "--out", str(out),
            "--quicklook", str(tmp_path / "look.png"), "--quiet"]  # fmt: skip
    assert infer(argv) == 0
    assert np.asarray(Image.open(out)).tolist() == [[0, 1, 2], [2, 1, 3]]  # purple = class 3
    assert Image.open(tmp_path / "look.png").size[0] > 0
    result = Classifier.load(model, new_head).classify_scene(tmp_path / "scene.png")
    legend = [text for text, _ in _legend(result, None)]
    assert legend == ["red (1)", "green (2)", "blue (2)", "purple (1)", "skipped (0)"]


def test_no_torch_or_sklearn_after_an_enrolment_in_a_fresh_interpreter(pair, tmp_path):
    model, _ = pair
    purple = _tiles(tmp_path / "purple", PURPLE)
    code = (
        "import json, sys\nfrom rfmml.runtime.enroll_cli import main\n"
        f"code = main(['--model', {str(model)!r}, '--add', 'purple', {str(purple)!r}, '--out', "
        f"{str(tmp_path / 'v2.npz')!r}])\n"
        "print(json.dumps([code, sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    code, modules = json.loads(probe.stdout.splitlines()[-1])
    assert code == 0 and "onnxruntime" in modules
    assert "torch" not in modules and "sklearn" not in modules


def test_help_says_the_svm_is_dropped(capsys):
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "An SVM part cannot stay valid without its training data: it is dropped" in text
    assert "--add NAME DIR" in text and "--force" in text


def test_images_may_be_one_file_a_list_of_files_or_a_folder(pair, tmp_path):
    from rfmml.runtime.errors import InputError

    model, _ = pair
    folder = _tiles(tmp_path / "purple", PURPLE, n=3)
    files = sorted(folder.iterdir())
    clf = Classifier.load(model)
    with pytest.warns(UserWarning, match="SVM part"):
        by_folder = clf.enroll("purple", folder).head
        by_list = clf.enroll("purple", files).head
        by_file = clf.enroll("purple", files[0]).head
    np.testing.assert_array_equal(by_folder.prototypes, by_list.prototypes)
    assert by_folder.enrolments[0].sha256 == by_list.enrolments[0].sha256
    assert by_file.train_counts[4] == 1 and by_file.enrolments[0].sha256 == tiles_digest(
        [sha256_file(files[0])]
    )
    with pytest.raises(InputError, match="tile file.s. not found: .*nope.png"):
        clf.enroll("purple", [files[0], tmp_path / "nope.png"])
