"""Export of a tiny model: contract, torch/onnxruntime round trip, int8, fp16, atomic pair writing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from runtime_fixtures import random_head

from rfmml.export.onnx_export import check_onnx, export_onnx
from rfmml.export.parity import compare, embed_in_batches, ort_embedder, ort_session, torch_embedder
from rfmml.runtime.artifact import ArtifactError, Head, check_binding, head_arrays, load_head
from rfmml.runtime.imageio import resize_rgb
from rfmml.trainer.models import build_embedding_net

INPUT_SIZE = (24, 32)  # (H, W): deliberately not square


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = build_embedding_net("conv4")
    for module in model.modules():  # non-trivial batch-norm statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_onnx(tiny_model) -> bytes:
    return export_onnx(tiny_model, INPUT_SIZE)


def _images(n: int, size=INPUT_SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def test_contract_of_the_graph(tiny_onnx):
    import onnx

    check_onnx(tiny_onnx)  # full_check, names, dtypes, dynamic batch
    proto = onnx.load_from_string(tiny_onnx)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [*INPUT_SIZE, 3]
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer)


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_onnxruntime_equals_torch(tiny_model, tiny_onnx, batch):
    images = _images(batch, seed=batch)
    reference = torch_embedder(tiny_model)(images)
    candidate = ort_embedder(ort_session(tiny_onnx))(images)
    assert candidate.shape == reference.shape == (batch, 64) and candidate.dtype == np.float32
    report = compare(reference, candidate, rel_tolerance=1e-4)
    assert report.passed, report.summary()


def test_non_square_images_resized_by_the_runtime(tiny_model, tiny_onnx):
    rng = np.random.default_rng(3)
    raw = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((50, 37, 3), (37, 61, 3), (24, 32, 3))]
    images = np.stack([resize_rgb(image, INPUT_SIZE) for image in raw])
    sizes = [1, 2]
    reference = embed_in_batches(torch_embedder(tiny_model), images, sizes)
    candidate = embed_in_batches(ort_embedder(ort_session(tiny_onnx)), images, sizes)
    report = compare(reference, candidate, batch_sizes=sizes, rel_tolerance=1e-4)
    assert report.passed, report.summary()


def test_parity_report_fails_beyond_tolerance():
    reference = np.ones((4, 8), np.float32)
    candidate = reference.copy()
    candidate[2, 3] += 1e-2
    scorers = {"proto": lambda e: -np.abs(e[:, :2] - np.array([1.0, 1.005], np.float32))}
    report = compare(reference, candidate, scorers, rel_tolerance=1e-4, min_agreement=1.0)
    assert not report.passed and report.max_rel_diff == pytest.approx(1e-2, rel=1e-4)
    assert report.agreement == {"proto": 1.0} and "FAILED" in report.summary()


def _head(n_classes: int = 3, dim: int = 64, svm: bool = True) -> Head:
    return random_head(n_classes, dim, svm, INPUT_SIZE, metadata={"parity": {"passed": True}})


CONTRACT_DTYPES = {
    "format_version": np.int64,
    "class_names": np.str_,
    "input_size": np.int64,
    "embedding_dim": np.int64,
    "distance": np.str_,
    "prototypes": np.float32,
    "svm_coef": np.float32,
    "svm_intercept": np.float32,
    "svm_l2_normalize": np.bool_,
    "onnx_sha256": np.str_,
    "majority": np.bool_,
    "train_counts": np.int64,
    "metadata_json": np.str_,
}


def test_pair_written_atomically_with_exact_keys_and_binding(tmp_path, tiny_onnx):
    from rfmml.export.writer import write_pairs

    model_path = tmp_path / "out" / "model.onnx"
    (head,) = write_pairs([(model_path, tiny_onnx, _head())])
    head_path = model_path.with_suffix(".npz")
    assert sorted(p.name for p in model_path.parent.iterdir()) == ["model.npz", "model.onnx"]
    with np.load(head_path, allow_pickle=False) as data:
        assert set(data.files) == set(CONTRACT_DTYPES) == set(head_arrays(head))
        for key, dtype in CONTRACT_DTYPES.items():
            assert data[key].dtype.type is dtype, key
    loaded = load_head(head_path)
    check_binding(model_path, loaded, head_path)  # the pair belongs together
    with pytest.raises(FileExistsError, match="--force"):
        write_pairs([(model_path, tiny_onnx, _head())])
    write_pairs([(model_path, tiny_onnx, _head(svm=False))], force=True)
    with np.load(head_path, allow_pickle=False) as data:
        assert "svm_coef" not in data.files
    tampered = bytearray(model_path.read_bytes())
    tampered[-1] ^= 0xFF
    model_path.write_bytes(bytes(tampered))
    with pytest.raises(ArtifactError, match="does not belong to"):
        check_binding(model_path, load_head(head_path), head_path)


def test_failed_write_leaves_nothing(tmp_path, tiny_onnx, monkeypatch):
    import rfmml.export.writer as writer

    def broken_save(path, head):
        raise OSError("disk full")

    monkeypatch.setattr(writer, "save_head", broken_save)
    with pytest.raises(OSError, match="disk full"):
        writer.write_pairs([(tmp_path / "model.onnx", tiny_onnx, _head())])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("weight_bits", [7, 8])
def test_int8_keeps_the_contract_and_stays_close(tiny_onnx, weight_bits):
    """Both targets of ``rfmml-export --int8-weights`` (8: GPTQ-rounded 8-bit weights; this conv net
    has no 1x1 or depthwise layer, so GPTQ has nothing to re-round, which must work too)."""
    import onnx

    from rfmml.export.quantize import int8_settings, preprocessing_nodes, quantize_int8

    excluded = preprocessing_nodes(onnx.load_from_string(tiny_onnx))
    assert excluded and not any("conv" in name.lower() for name in excluded)
    int8 = quantize_int8(tiny_onnx, _images(32, seed=5), batch_size=8, settings=int8_settings(weight_bits))
    ops = {node.op_type for node in onnx.load_from_string(int8).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    images = _images(7, seed=6)
    reference = ort_embedder(ort_session(tiny_onnx))(images)
    candidate = embed_in_batches(ort_embedder(ort_session(int8)), images, [1, 2, 4])
    report = compare(reference, candidate, reference_name="fp32", candidate_name="int8")
    assert report.min_cosine > 0.99, report.summary()


def test_fp16_has_uint8_input_float32_output(tiny_model):
    from rfmml.export.quantize import export_fp16

    fp16 = export_fp16(tiny_model, INPUT_SIZE, opset=18)  # check_onnx inside: uint8 in, float32 out
    images = _images(3, seed=7)
    reference = torch_embedder(tiny_model)(images)
    candidate = ort_embedder(ort_session(fp16))(images)
    assert candidate.dtype == np.float32
    assert compare(reference, candidate).max_rel_diff < 1e-2


def test_opset_asked_for_is_the_opset_written(tiny_model, tiny_onnx):
    import onnx

    from rfmml.export.options import MAX_OPSET
    from rfmml.runtime.errors import ExportError

    newest = export_onnx(tiny_model, INPUT_SIZE, opset=MAX_OPSET)
    proto = onnx.load_from_string(newest)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == MAX_OPSET
    images = _images(3, seed=8)
    report = compare(ort_embedder(ort_session(tiny_onnx))(images), ort_embedder(ort_session(newest))(images))
    assert report.max_rel_diff < 1e-5, report.summary()
    # torch falls back to another opset silently where it cannot convert: such a model is refused
    with pytest.raises(ExportError, match="has opset 18, not opset 19"):
        check_onnx(tiny_onnx, opset=19)
    with pytest.raises(ExportError, match="choose 18 to"):
        export_onnx(tiny_model, INPUT_SIZE, opset=MAX_OPSET + 1)


def _exporter_error(cause: BaseException) -> BaseException:
    """An OnnxExporterError as torch raises it: a multi-line report, the failure as its cause."""
    try:
        raise cause
    except BaseException as error:
        try:
            raise torch.onnx.OnnxExporterError("Failed to export.\n\x1b[96mstep 1/3\x1b[0m\nmore") from error
        except torch.onnx.OnnxExporterError as wrapped:
            return wrapped


def test_exporter_failures_are_one_line_and_ctrl_c_stays_an_interrupt(tiny_model, monkeypatch):
    from rfmml.runtime.errors import ExportError

    def failing(cause):
        def export(*args, **kwargs):
            raise _exporter_error(cause)

        return export

    monkeypatch.setattr(torch.onnx, "export", failing(ValueError("unsupported operator aten::foo\ndetails")))
    with pytest.raises(ExportError) as caught:
        export_onnx(tiny_model, INPUT_SIZE)
    assert str(caught.value) == (
        "torch.onnx cannot export this model at opset 18: ValueError: unsupported operator aten::foo"
    )
    # Ctrl-C inside torch's lazy imports surfaces as an AttributeError wrapped by the exporter
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        try:
            raise AttributeError("module 'torch._dynamo' has no attribute 'exc'")
        except AttributeError as after_interrupt:
            interrupted = after_interrupt
    monkeypatch.setattr(torch.onnx, "export", failing(interrupted))
    with pytest.raises(KeyboardInterrupt):
        export_onnx(tiny_model, INPUT_SIZE)
