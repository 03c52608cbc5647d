"""Reduced-precision variants of an exported float model: int8 (static QDQ) and fp16.

int8: ``onnxruntime.quantization.quantize_static``, QDQ format, per-channel int8 weights (7-bit
range, see ``quantize_int8``), uint8 activations, MinMax calibration on training images. The
pre-processing at the head of the graph (the uint8 input, its transpose, the cast and the
normalising Mul/Add) is excluded from quantization: left alone, the quantizer rounds the
normalisation constants to 8 bits and adds a quantize/dequantize pair on the cast image and after
each of Mul and Add. Measured on three conv4 EuroSAT runs (400 test images): excluded, max relative
difference to fp32 0.027-0.032 and svm agreement 95.25-96.75 %; quantized, 0.029-0.033 and
95.0-95.75 %. So the first tensor that is quantized is the normalised image, at the first Conv.

fp16: the same torch model cast to float16 and exported again (``onnx_export.half_precision``): the
input stays uint8 and the output float32, so the contract and the runtime are unchanged. It is meant
for GPU deployment; measure before using it on a CPU.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rfmml.export.onnx_export import check_onnx
from rfmml.runtime.artifact import INPUT_NAME

# The first ops that do real work on the normalised image; pre-processing stops here.
_COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})


def preprocessing_nodes(model_proto, include_first_compute: bool = False) -> list[str]:
    """Names of the nodes between the ``images`` input and the first compute op (Conv/MatMul/Gemm).

    These are the uint8 -> normalised float pre-processing (Transpose, Cast, Mul, Add) and the
    shape bookkeeping that reads the input's batch size; they stay in float. With
    ``include_first_compute`` the compute ops that read the normalised image (the first Conv) too.
    """
    consumers: dict[str, list] = {}
    for node in model_proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    excluded: list[str] = []
    seen: set[str] = set()
    frontier = [INPUT_NAME]
    while frontier:
        tensor = frontier.pop()
        for node in consumers.get(tensor, []):
            if node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in _COMPUTE_OPS:
                if include_first_compute:
                    excluded.append(node.name)
                continue
            excluded.append(node.name)
            frontier.extend(node.output)
    return excluded


def first_depthwise_conv(model_proto) -> list[str]:
    """The name of the first depthwise convolution (a Conv whose ``group`` > 1), or none.

    In EfficientNet-Lite / MobileNet-style networks it reads the stem's full-resolution output with
    3x3 weights per channel, and 7-bit int8 weights there cost the most: measured on a trained
    efficientnet_lite0 (--tune head, EuroSAT-LT, 1000 validation images), keeping it in float lifted
    int8 top-1 agreement with fp32 from 90.2 to 92.4 % (proto) and the min cosine from 0.57 to 0.78.
    """
    for node in model_proto.graph.node:
        if node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute):
            return [node.name]
    return []


def _calibration_reader(images: np.ndarray, batch_size: int):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """Feeds uint8 [B, H, W, 3] batches of the calibration images to the calibrator."""

        def __init__(self) -> None:
            self._batches: Iterator[dict[str, np.ndarray]] = iter(
                {INPUT_NAME: np.ascontiguousarray(images[start : start + batch_size])}
                for start in range(0, len(images), batch_size)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    return Reader()


def quantize_int8(
    model_bytes: bytes,
    calibration_images: np.ndarray,
    batch_size: int = 32,
    per_channel: bool = True,
    reduce_range: bool = True,
    float_first_conv: bool = True,
    float_first_depthwise: bool = True,
) -> bytes:
    """Static QDQ int8 quantization of a float model (serialised bytes) -> serialised int8 model.

    ``calibration_images``: uint8 [N, H, W, 3], training images (a class-balanced subset).
    ``reduce_range`` (default on): 7-bit weights. Without it, CPUs that lack VNNI (AVX2 only, such as
    the AMD EPYC Zen 2 of the development machines) saturate the int16 sums of u8 x s8 products:
    measured on a conv4 EuroSAT run, the int8 embeddings' min cosine to fp32 was 0.92 without and
    0.9996 with it. It costs next to nothing on VNNI CPUs, and the artifact may be deployed on either.
    ``float_first_conv`` (default on): the first convolution, the one that reads the image, stays in
    float (with its 3 input channels it is a small share of the work; see BENCHMARKS.md).
    ``float_first_depthwise`` (default on): so does the first depthwise convolution, where the
    network has one (:func:`first_depthwise_conv`).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration_images) == 0:
        raise ValueError("int8 calibration needs at least one image")
    with tempfile.TemporaryDirectory(prefix="rfmml-int8-") as tmp:
        float_path, pre_path, int8_path = (Path(tmp) / name for name in ("f.onnx", "pre.onnx", "q.onnx"))
        float_path.write_bytes(model_bytes)
        # shape inference + graph cleanup, as onnxruntime recommends before static quantization
        quant_pre_process(str(float_path), str(pre_path), skip_symbolic_shape=True)
        pre_proto = onnx.load(str(pre_path))
        excluded = preprocessing_nodes(pre_proto, include_first_compute=float_first_conv)
        if float_first_depthwise:
            excluded += first_depthwise_conv(pre_proto)
        quantize_static(
            str(pre_path),
            str(int8_path),
            _calibration_reader(np.asarray(calibration_images, dtype=np.uint8), batch_size),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
        )
        data = int8_path.read_bytes()
    check_onnx(data)
    return data


def export_fp16(model, input_size: tuple[int, int], opset: int) -> bytes:
    """Export a float16 copy of ``model`` (input uint8, output float32) -> serialised ONNX bytes."""
    from rfmml.export.onnx_export import export_onnx, half_precision

    return export_onnx(half_precision(model), input_size, opset=opset)
