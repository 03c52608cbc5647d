"""rfmml-export on a tiny synthetic run: the pair, the heads, the runtime's view, and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from export_checks import assert_runtime_matches_eval_json

from rfmml.export.cli import main

TRAIN_ARGS = ["--ret-episodes", "8", "--acf-episodes", "4", "--val-every", "4", "--no-progress", "--no-cache"]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    from rfmml.trainer.cli import main as train

    run = tmp_path_factory.mktemp("export") / "run"
    assert train(["--out", str(run), *TRAIN_ARGS]) == 0
    return run


@pytest.fixture(scope="module")
def exported(synthetic_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported") / "model.onnx"
    assert main(["--run", str(synthetic_run), str(out), "--int8", "--fp16", "--no-progress"]) == 0
    return out


def test_variant_pairs(exported):
    from rfmml.runtime.artifact import check_binding, load_head

    float_head = load_head(exported.with_suffix(".npz"))
    for precision in ("int8", "fp16"):
        model = exported.with_name(f"model.{precision}.onnx")
        head = load_head(model.with_suffix(".npz"))
        check_binding(model, head, model.with_suffix(".npz"))
        assert head.metadata["precision"] == precision and head.metadata["parity_vs_fp32"]["passed"]
        assert set(head.metadata["val_accuracy"]) == {"fp32", "int8", "fp16"}
        np.testing.assert_array_equal(head.prototypes, float_head.prototypes)  # heads of the float model


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("rfmml-export: error: "), err
    return err[-1]


def test_runtime_gets_the_runs_test_accuracy(synthetic_run, exported):
    assert_runtime_matches_eval_json(synthetic_run, exported)


def test_head_contents(synthetic_run, exported):
    from rfmml.runtime.artifact import load_head, sha256_file
    from rfmml.trainer.data import load_part
    from rfmml.trainer.heads import embed, fit_prototypes
    from rfmml.trainer.proto_calibration import embedding_centre
    from rfmml.trainer.run import load_run

    head = load_head(exported.with_suffix(".npz"))
    assert head.onnx_sha256 == sha256_file(exported)
    loaded = load_run(synthetic_run)
    images, labels = load_part(loaded.split, "train", loaded.config.image_size)
    train_emb = embed(loaded.model, images)
    # the default method (rfmml-plus) ships the calibrated Proto head: centre = mean embedding of ALL
    # training images, prototypes = class means of those embeddings centred and L2-normalised, all
    # under the exported weights
    assert loaded.config.method == "rfmml-plus" and head.proto_centre is not None
    centre = embedding_centre(train_emb)
    np.testing.assert_allclose(head.proto_centre, centre, rtol=1e-4, atol=1e-4 * np.abs(centre).max())
    reference = fit_prototypes(train_emb, labels, len(loaded.split.classes), head.proto_centre).numpy()
    np.testing.assert_allclose(head.prototypes, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    assert head.class_names == tuple(loaded.split.classes)
    assert head.input_size == (loaded.config.image_size,) * 2
    assert head.train_counts.tolist() == np.bincount(labels.numpy()).tolist()
    assert head.majority.tolist() == [c in loaded.split.majority for c in loaded.split.classes]
    assert head.has_svm and head.metadata["svm"]["class_weight"] == "balanced"
    # provenance: the checkpoint's position (best.pt of the last validation)
    assert head.metadata["step"] == loaded.checkpoint["step"] and head.metadata["step"] > 0
    assert head.metadata["unit"] == loaded.checkpoint["unit"]
    parity = head.metadata["parity"]
    assert parity["passed"] and parity["max_rel_diff"] <= 1e-4 and 1 in parity["batch_sizes"]
    assert any(size % 2 for size in parity["batch_sizes"] if size > 1)


def test_refuses_to_overwrite_without_force(synthetic_run, exported, capsys):
    before = exported.stat().st_mtime_ns
    assert main(["--run", str(synthetic_run), str(exported), "--no-progress"]) == 2
    assert "--force" in _one_line_error(capsys)
    assert exported.stat().st_mtime_ns == before


def test_no_svm_and_no_balance(synthetic_run, tmp_path):
    from rfmml.runtime.artifact import load_head

    out = tmp_path / "m.onnx"
    assert main(["--run", str(synthetic_run), str(out), "--no-svm", "--no-progress"]) == 0
    with np.load(out.with_suffix(".npz"), allow_pickle=False) as data:
        assert "svm_coef" not in data.files
    assert (
        main(
            ["--run", str(synthetic_run), str(out), "--svm-class-weight", "none", "--force", "--no-progress"]
        )
        == 0
    )
    assert load_head(out.with_suffix(".npz")).metadata["svm"]["class_weight"] == "none"
    grid = ["--svm-c", "0.5", "--svm-c", "2"]
    assert main(["--run", str(synthetic_run), str(out), *grid, "--force", "--no-progress"]) == 0
    svm = load_head(out.with_suffix(".npz")).metadata["svm"]
    assert set(svm["val_accuracy_by_c"]) == {"0.5", "2"} and svm["C"] in (0.5, 2.0)


def test_parity_failure_writes_nothing(synthetic_run, tmp_path, monkeypatch, capsys):
    import rfmml.export.pipeline as pipeline

    real = pipeline.torch_embedder

    def drifting(model):
        embed = real(model)
        return lambda batch: embed(batch) * 1.01  # a 1 % error, far beyond 1e-4

    monkeypatch.setattr(pipeline, "torch_embedder", drifting)
    assert main(["--run", str(synthetic_run), str(tmp_path / "m.onnx"), "--no-progress"]) == 2
    assert "parity check" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def _copy_run(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def test_bad_runs_are_one_line_errors(synthetic_run, tmp_path, capsys):
    out = tmp_path / "out" / "m.onnx"

    def fails(run, *extra) -> str:
        assert main(["--run", str(run), str(out), "--no-progress", *extra]) == 2
        assert not out.parent.exists() or list(out.parent.iterdir()) == []
        return _one_line_error(capsys)

    assert "no checkpoint nope.pt" in fails(synthetic_run, "--checkpoint", "nope.pt")
    assert "run folder not found" in fails(tmp_path / "missing")

    no_split = _copy_run(synthetic_run, tmp_path / "a")
    (no_split / "split.json").unlink()
    assert "split.json is missing" in fails(no_split)

    moved = _copy_run(synthetic_run, tmp_path / "b")
    split = json.loads((moved / "split.json").read_text())
    split["data_root"] = str(tmp_path / "gone" / "EuroSAT")
    (moved / "split.json").write_text(json.dumps(split))
    message = fails(moved)
    assert str(tmp_path / "gone" / "EuroSAT") in message and "--data DIR" in message
    assert "--data" in fails(moved, "--data", str(tmp_path / "elsewhere"))

    other_backbone = _copy_run(synthetic_run, tmp_path / "c")
    config = json.loads((other_backbone / "config.json").read_text())
    config["backbone"] = "resnet18"
    (other_backbone / "config.json").write_text(json.dumps(config))
    assert "backbone" in fails(other_backbone)

    old_version = _copy_run(synthetic_run, tmp_path / "d")
    state = torch.load(old_version / "best.pt", map_location="cpu", weights_only=True)
    torch.save({**state, "code_version": "0.0.1"}, old_version / "best.pt")
    assert "rfmml 0.0.1" in fails(old_version)


def test_help_has_examples(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "Examples:" in text and "--int8" in text and "slower" not in text.split("--fp16")[0]


def test_runtime_refuses_a_tampered_model(exported, tmp_path):
    from rfmml.runtime.artifact import ArtifactError
    from rfmml.runtime.classifier import Classifier

    model = tmp_path / "model.onnx"
    shutil.copy(exported, model)
    shutil.copy(exported.with_suffix(".npz"), model.with_suffix(".npz"))
    Classifier.load(model)  # the pair as written loads
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not belong to"):
        Classifier.load(model)


def test_interrupted_export_writes_nothing(synthetic_run, tmp_path, monkeypatch, capsys):
    import rfmml.export.pipeline as pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_quantize", interrupted)  # Ctrl-C after the float model was made
    assert main(["--run", str(synthetic_run), str(tmp_path / "m.onnx"), "--int8", "--no-progress"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "rfmml-export: interrupted"
    assert list(tmp_path.iterdir()) == []
