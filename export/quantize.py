"""Reduced-precision variants of an exported float model: int8 (static QDQ) and fp16.

int8: ``onnxruntime.quantization.quantize_static``, QDQ format, per-channel int8 weights, uint8
activations, MinMax calibration on training images. One rule says which nodes stay float and why
(:func:`float_nodes`): the pre-processing (uint8 -> normalised float; quantized, the normalisation
constants would be rounded to 8 bits), the first Conv (it reads the image: 3 input channels, a small
share of the work) and the first depthwise convolution (it reads the stem's full-resolution output;
the most sensitive layer of MobileNet-type nets). Weights are 7-bit (``reduce_range``: no int16
saturation on CPUs without VNNI) except in the quantized depthwise convolutions, which get all 8 bits
(onnxruntime's depthwise kernels widen to int16 and accumulate in int32: they cannot saturate).
Every float Conv/Gemm is guarded against onnxruntime re-quantizing it (:func:`_keep_float`).
Measured on a trained efficientnet_lite0 (BENCHMARKS.md, "int8 on a trained efficientnet_lite0"):
keeping all depthwise convolutions float, other calibration methods, more calibration images and
symmetric activations bought nothing or cost speed. :func:`int8_settings` names the two targets of
``rfmml-export --int8-weights``: 7 (the default above) and 8 (8-bit weights everywhere, rounded for
each layer's output error by :mod:`rfmml.export.int8_rounding`; only for CPUs with VNNI or ARM
dot-product). The settings used are recorded in the int8 model's metadata (``SETTINGS_KEY``).

fp16: the same torch model cast to float16 and exported again (``onnx_export.half_precision``): the
input stays uint8 and the output float32, so the contract and the runtime are unchanged. It is meant
for GPU deployment; measure before using it on a CPU.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rfmml.export.onnx_export import check_onnx
from rfmml.export.options import DEFAULT_INT8_WEIGHTS, INT8_WEIGHT_BITS
from rfmml.runtime.artifact import INPUT_NAME

CALIBRATIONS = ("minmax", "percentile", "entropy")
ROUNDINGS = ("nearest", "gptq")

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


def depthwise_convs(model_proto) -> list[str]:
    """Names of the depthwise convolutions: Conv nodes whose ``group`` equals their input channels
    (weights [C, 1, kH, kW] with group C > 1), in graph order."""
    weights = {init.name: tuple(init.dims) for init in model_proto.graph.initializer}
    names = []
    for node in model_proto.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        shape = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if group > 1 and shape is not None and len(shape) == 4 and shape[0] == group and shape[1] == 1:
            names.append(node.name)
    return names


@dataclass(frozen=True)
class Int8Settings:
    """How ``quantize_int8`` quantizes; the defaults are ``rfmml-export --int8``'s (BENCHMARKS.md,
    "int8 on a trained efficientnet_lite0", has the measurements behind each)."""

    calibration: str = "minmax"  # one of CALIBRATIONS (onnxruntime's calibrators)
    reduce_range: bool = True  # 7-bit weights (see quantize_int8)
    full_range_depthwise: bool = True  # ... except in depthwise convolutions: 8 bits (cannot saturate)
    per_channel: bool = True
    symmetric_activations: bool = False  # int8 activations around 0 instead of uint8 min..max
    float_first_conv: bool = True  # the Conv that reads the normalised image
    float_depthwise: str = "first"  # "first" | "all" | "none": which depthwise convolutions stay float
    float_nodes: tuple[str, ...] = ()  # further node names kept float (e.g. from a sensitivity scan)
    # Clip/Relu stay explicit nodes instead of being folded into the quantization range, so that an
    # optimizer removing a Q/DQ pair cannot drop a ReLU6 (measured: no change in agreement or speed)
    keep_activations: bool = True
    bias_correction: bool = True  # lower each quantized layer's bias by its mean rounding shift (int8_bias)
    rounding: str = (
        "nearest"  # "nearest" | "gptq": integer weights chosen for the output error (int8_rounding)
    )

    @property
    def weight_bits(self) -> int:
        """Bits of the weights outside the depthwise convolutions: 7 (reduce_range) or 8."""
        return 7 if self.reduce_range else 8

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ValueError(
                f"calibration must be one of {', '.join(CALIBRATIONS)}, not {self.calibration!r}"
            )
        if self.float_depthwise not in ("all", "first", "none"):
            raise ValueError(f"float_depthwise must be all, first or none, not {self.float_depthwise!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, not {self.rounding!r}")


def int8_settings(weight_bits: int = DEFAULT_INT8_WEIGHTS) -> Int8Settings:
    """The settings of ``rfmml-export --int8 --int8-weights N``. 7 (default): 7-bit weights outside
    the depthwise convolutions, safe on every CPU. 8: 8-bit weights everywhere, rounded for the
    layers' output error (GPTQ, :mod:`rfmml.export.int8_rounding`): for CPUs with VNNI (AVX-512 VNNI,
    AVX-VNNI) or ARM dot-product instructions; on AVX2-only x86 the int16 sums can saturate.
    Measured on a trained efficientnet_lite0 (BENCHMARKS.md): agreement 96.8 / 97.7 % (7) and
    99.0 / 98.85 % (8) proto / svm, both about 2x fp32."""
    if weight_bits not in INT8_WEIGHT_BITS:
        raise ValueError(
            f"int8 weights must be {' or '.join(map(str, INT8_WEIGHT_BITS))} bits, not {weight_bits}"
        )
    if weight_bits == 8:
        return Int8Settings(reduce_range=False, rounding="gptq")
    return Int8Settings()


def float_nodes(model_proto, settings: Int8Settings = Int8Settings()) -> dict[str, list[str]]:
    """The nodes that stay in float, by reason: ``{"pre-processing": [...], "reads the image": [...],
    "depthwise": [...], "asked for": [...]}`` (empty lists where a rule does not apply).

    - pre-processing: uint8 -> normalised float (:func:`preprocessing_nodes`), always.
    - reads the image: the first Conv (3 input channels: a small share of the work).
    - depthwise: the first depthwise convolution (``float_depthwise="first"``), or all / none.
    - asked for: ``settings.float_nodes``.
    """
    preprocessing = preprocessing_nodes(model_proto)
    first_compute = [
        name
        for name in preprocessing_nodes(model_proto, include_first_compute=True)
        if name not in preprocessing
    ]
    depthwise = depthwise_convs(model_proto)
    kept = {"all": depthwise, "first": depthwise[:1], "none": []}[settings.float_depthwise]
    return {
        "pre-processing": preprocessing,
        "reads the image": first_compute if settings.float_first_conv else [],
        "depthwise": kept,
        "asked for": list(settings.float_nodes),
    }


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


def _full_range_weights(model_proto, settings: Int8Settings, float_depthwise: list[str]) -> dict:
    """TensorQuantOverrides giving the quantized depthwise convolutions' weights all 8 bits when
    ``settings`` asks for it (onnxruntime takes the first channel's entry for every channel)."""
    if not (settings.reduce_range and settings.full_range_depthwise):
        return {}
    convs = {node.name: node for node in model_proto.graph.node}
    entry = {"axis": 0, "reduce_range": False} if settings.per_channel else {"reduce_range": False}
    return {
        convs[name].input[1]: [entry] for name in depthwise_convs(model_proto) if name not in float_depthwise
    }


def quantize_int8(
    model_bytes: bytes,
    calibration_images: np.ndarray,
    batch_size: int = 32,
    settings: Int8Settings = Int8Settings(),
    calibration_cache: Path | None = None,
) -> bytes:
    """Static QDQ int8 quantization of a float model (serialised bytes) -> serialised int8 model.

    ``calibration_images``: uint8 [N, H, W, 3], training images (a class-balanced subset).
    ``settings.reduce_range`` (default on): 7-bit weights. Without it, CPUs that lack VNNI (AVX2 only,
    such as AMD EPYC Zen 2) saturate the int16 sums of u8 x s8 products: measured on a conv4 EuroSAT
    run, the int8 embeddings' min cosine to fp32 was 0.92 without and 0.9996 with it. It costs next
    to nothing on VNNI CPUs, and the artifact may be deployed on either.
    The nodes of :func:`float_nodes` stay in float; with ``settings.bias_correction`` (default on)
    each quantized layer's bias is corrected for weight rounding (:mod:`rfmml.export.int8_bias`, on
    the same calibration images). ``calibration_cache``: a JSON file of the
    calibrated tensor ranges, written on first use and read after (same model, images and method).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration_images) == 0:
        raise ValueError("int8 calibration needs at least one image")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    with tempfile.TemporaryDirectory(prefix="rfmml-int8-") as tmp:
        float_path, pre_path, int8_path = (Path(tmp) / name for name in ("f.onnx", "pre.onnx", "q.onnx"))
        float_path.write_bytes(model_bytes)
        # shape inference + graph cleanup, as onnxruntime recommends before static quantization
        quant_pre_process(str(float_path), str(pre_path), skip_symbolic_shape=True)
        pre_proto = onnx.load(str(pre_path))
        kept_float = float_nodes(pre_proto, settings)
        quantize_static(
            str(pre_path),
            str(int8_path),
            _calibration_reader(np.asarray(calibration_images, dtype=np.uint8), batch_size),
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=QuantType.QInt8 if settings.symmetric_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[settings.calibration],
            nodes_to_exclude=[name for names in kept_float.values() for name in names],
            calibration_cache_path=calibration_cache,
            extra_options={
                "ActivationSymmetric": settings.symmetric_activations,
                "QDQKeepRemovableActivations": settings.keep_activations,
                "TensorQuantOverrides": _full_range_weights(pre_proto, settings, kept_float["depthwise"]),
            },
        )
        int8_proto = onnx.load(str(int8_path))
    _keep_float(int8_proto, [name for names in kept_float.values() for name in names])
    images = np.asarray(calibration_images, dtype=np.uint8)
    if settings.rounding != "nearest":
        from rfmml.export.int8_rounding import round_weights

        round_weights(int8_proto, pre_proto, images)
    if settings.bias_correction:
        from rfmml.export.int8_bias import correct_biases

        correct_biases(int8_proto, pre_proto, images)
    _stamp(int8_proto, settings)
    data = int8_proto.SerializeToString()
    check_onnx(data)
    return data


SETTINGS_KEY = "rfmml.int8_settings"  # the int8 model's metadata_props entry: how it was quantized


def _stamp(model_proto, settings: Int8Settings) -> None:
    """Record ``settings`` (JSON, with ``weight_bits``) in the model's metadata under SETTINGS_KEY."""
    import dataclasses
    import json

    entry = model_proto.metadata_props.add()
    entry.key = SETTINGS_KEY
    entry.value = json.dumps({"weight_bits": settings.weight_bits, **dataclasses.asdict(settings)})


def _keep_float(model_proto, names: list[str]) -> None:
    """Make the float Conv/Gemm among ``names`` stay float in onnxruntime: put a Clip to the range of
    the DequantizeLinear they read between the two (in place; exact, the values are in that range).

    Why: onnxruntime's WeightBiasQuantization graph transformer (basic level, so on in every
    session) quantizes the weights of any Conv/Gemm whose input comes from a DequantizeLinear to
    per-tensor int8, silently: measured on a trained efficientnet_lite0 with every depthwise
    convolution "float", mean cosine to fp32 0.910 with the transformer and 0.973 without it.
    """
    from onnx import helper, numpy_helper

    producers = {output: node for node in model_proto.graph.node for output in node.output}
    constants = {init.name: init for init in model_proto.graph.initializer}
    wanted = set(names)
    for index, node in reversed(list(enumerate(model_proto.graph.node))):
        dq = producers.get(node.input[0]) if node.name in wanted and node.op_type in _COMPUTE_OPS else None
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[1] not in constants:
            continue
        scale = float(numpy_helper.to_array(constants[dq.input[1]]))
        zero_point = numpy_helper.to_array(constants[dq.input[2]]) if len(dq.input) > 2 else np.uint8(0)
        info = np.iinfo(zero_point.dtype)
        bounds = [(info.min - int(zero_point)) * scale, (info.max - int(zero_point)) * scale]
        low, high, clipped = (f"{node.name}_float_input{end}" for end in ("_min", "_max", ""))
        for name, bound in ((low, bounds[0]), (high, bounds[1])):
            model_proto.graph.initializer.append(numpy_helper.from_array(np.array(bound, np.float32), name))
        clip = helper.make_node("Clip", [node.input[0], low, high], [clipped], name=clipped)
        node.input[0] = clipped
        model_proto.graph.node.insert(index, clip)


def export_fp16(model, input_size: tuple[int, int], opset: int) -> bytes:
    """Export a float16 copy of ``model`` (input uint8, output float32) -> serialised ONNX bytes."""
    from rfmml.export.onnx_export import export_onnx, half_precision

    return export_onnx(half_precision(model), input_size, opset=opset)
