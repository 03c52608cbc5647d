"""Loading the pair (digest binding, corrupt files, providers), the heads' maths, predict and top-k."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_fixtures import COLOURS, NAMES, build_stats_model, colour_pair, uniform_tile, write_head

from rfmml.runtime import ArtifactError, Classifier, load_head
from rfmml.runtime.cli import main
from rfmml.runtime.heads import HeadScorer, pairwise_distance, softmax
from rfmml.runtime.session import parse_providers


@pytest.fixture
def model(tmp_path):
    return colour_pair(tmp_path)


def test_predict_uniform_tiles_and_topk(model):
    clf = Classifier.load(model, providers="cpu", threads=1)
    batch = np.stack([uniform_tile(i) for i in (3, 0, 2, 1)])
    labels, scores = clf.predict(batch)
    assert labels.tolist() == [3, 0, 2, 1] and labels.dtype == np.int64
    assert scores.dtype == np.float32 and np.all((scores > 0) & (scores <= 1))
    top, top_scores = clf.predict_topk(batch, 3)
    assert top.shape == (4, 3) and top[:, 0].tolist() == [3, 0, 2, 1]
    assert np.all(np.diff(top_scores, axis=1) <= 0)
    assert clf.providers == ["CPUExecutionProvider"]
    assert clf.class_names == NAMES and clf.input_size == (32, 32)
    # a single image and an image of another size (resized with the shared filter) also work
    assert clf.predict(uniform_tile(2, (50, 70)))[0].tolist() == [2]
    with pytest.raises(ValueError, match="uint8"):
        clf.predict(batch.astype(np.float32))


def test_svm_head_agrees_with_proto_on_colours(model):
    clf = Classifier.load(model, head="svm")
    labels, _ = clf.predict(np.stack([uniform_tile(i) for i in range(4)]))
    assert labels.tolist() == [0, 1, 2, 3] and clf.head_kind == "svm"


def test_head_maths_follow_the_contract(model):
    head = load_head(model.with_suffix(".npz"))
    rng = np.random.default_rng(0)
    emb = rng.random((5, 3)).astype(np.float32)
    diff = emb[:, None, :].astype(np.float64) - head.prototypes[None].astype(np.float64)
    euclid = np.sqrt((diff**2).sum(-1))
    np.testing.assert_allclose(pairwise_distance(emb, head.prototypes, "euclidean"), euclid, atol=1e-6)
    np.testing.assert_allclose(pairwise_distance(emb, head.prototypes, "sqeuclidean"), euclid**2, atol=1e-6)
    proto = HeadScorer(head, "proto").scores(emb)
    expected = np.exp(-euclid) / np.exp(-euclid).sum(1, keepdims=True)
    np.testing.assert_allclose(proto, expected, atol=1e-6)
    svm = HeadScorer(head, "svm").scores(emb)
    np.testing.assert_allclose(svm, emb @ head.svm_coef.T + head.svm_intercept, atol=1e-5)
    normalized = HeadScorer(
        type(head)(**{**head.__dict__, "svm_l2_normalize": True}), "svm"
    ).scores(emb)  # fmt: skip
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    np.testing.assert_allclose(normalized, unit @ head.svm_coef.T + head.svm_intercept, atol=1e-5)
    np.testing.assert_allclose(softmax(np.array([[1000.0, 1000.0]])), [[0.5, 0.5]])


def test_missing_svm_head_is_a_clear_error(tmp_path):
    model = colour_pair(tmp_path, with_svm=False)
    with pytest.raises(ArtifactError, match="no SVM head"):
        Classifier.load(model, head="svm")


def test_mismatched_pair_is_refused(tmp_path, model):
    other = build_stats_model(tmp_path / "other.onnx", tag="another model")
    with pytest.raises(ArtifactError, match="does not belong"):
        Classifier.load(other, head_path=model.with_suffix(".npz"))


def test_missing_and_corrupt_files(tmp_path, model):
    with pytest.raises(ArtifactError, match="model file not found"):
        Classifier.load(tmp_path / "nope.onnx")
    lonely = build_stats_model(tmp_path / "lonely.onnx")
    with pytest.raises(ArtifactError, match="head file not found"):
        Classifier.load(lonely)
    bad_head = tmp_path / "bad.npz"
    bad_head.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ArtifactError, match="not a readable rfmml head"):
        load_head(bad_head)
    np.savez(tmp_path / "partial.npz", class_names=np.array(["a"]))
    with pytest.raises(ArtifactError, match="missing keys"):
        load_head(tmp_path / "partial.npz")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage that is not a protobuf model")
    write_head(corrupt, COLOURS / 255.0, NAMES)
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        Classifier.load(corrupt)


def test_head_input_size_must_match_a_static_model(tmp_path):
    model = build_stats_model(tmp_path / "m.onnx", (32, 32))
    write_head(model, COLOURS / 255.0, NAMES, input_size=(64, 64))
    with pytest.raises(ArtifactError, match="model input is 32x32"):
        Classifier.load(model)


def test_dynamic_model_uses_head_input_size(tmp_path):
    model = build_stats_model(tmp_path / "m.onnx", None)
    write_head(model, COLOURS / 255.0, NAMES, input_size=(16, 24))
    clf = Classifier.load(model)
    assert clf.predict(uniform_tile(1, (16, 24)))[0].tolist() == [1]


def test_providers_parsing():
    assert parse_providers("auto") == []
    assert parse_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="unknown or unavailable"):
        parse_providers("warp-drive")


def test_cli_errors_are_one_line_exit_2(tmp_path, model, capsys):
    folder = tmp_path / "tiles"
    folder.mkdir()
    cases = [
        ["--model", str(tmp_path / "missing.onnx"), str(folder)],
        ["--model", str(model), str(tmp_path / "no-such-input")],
        ["--model", str(model), str(folder), "--batch", "0"],
        ["--model", str(model), str(folder), "--tile", "64"],
        ["--model", str(model), str(folder), "--providers", "warp"],
        ["--model", str(model), str(folder), "--head", "svm", "--head", str(tmp_path / "x.npz")],
        ["--model", str(model)],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("rfmml-infer: error:"), (argv, err)
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "Examples" in text and "3 finished, but some folder" in text and "written as \\xNN" in text


def test_large_arrays_are_split_into_session_chunks(model):
    clf = Classifier.load(model)
    clf.max_batch = 3
    batch = np.stack([uniform_tile(i % 4) for i in range(10)])
    assert clf.predict(batch)[0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert clf.embed(batch).shape == (10, 3)
