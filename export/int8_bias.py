"""Bias correction of a QDQ int8 model: remove the mean output shift that weight rounding causes.

Rounding a layer's weights W to W_q shifts its output by (W_q - W) x. After a ReLU6 the inputs x are
all positive, so that error has a non-zero mean per output channel, E[(W_q - W) x] = (W_q - W) E[x],
which adds up layer after layer (Nagel et al., "Data-Free Quantization Through Weight Equalization and
Bias Correction", ICCV 2019). Each quantized Conv/Gemm's bias is lowered by that shift, with E[x] the
per-channel mean of the layer's input in the float model on the calibration images (zero padding at
the borders is ignored, as in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_LAYERS = ("Conv", "Gemm")


def dequantized(constants: dict, dq) -> np.ndarray:
    """The float value of a constant DequantizeLinear (per-tensor or per-axis)."""
    values = constants[dq.input[0]].astype(np.float64)
    scale = constants[dq.input[1]].astype(np.float64)
    zero = constants[dq.input[2]].astype(np.float64) if len(dq.input) > 2 else np.zeros_like(scale)
    if scale.ndim == 0:
        return (values - zero) * scale
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    shape = [1] * values.ndim
    shape[axis] = -1
    return (values - zero.reshape(shape)) * scale.reshape(shape)


def float_tensors(float_proto, tensors: list[str], images: np.ndarray, batch_size: int = 16):
    """Run the model ``float_proto`` (float or QDQ) on ``images`` (uint8 [N, H, W, 3]) in batches
    and yield, per batch, {tensor: float32 array} for every one of ``tensors`` (inner tensors too)."""
    import onnx
    import onnxruntime as ort

    from rfmml.runtime.artifact import INPUT_NAME

    if not tensors:
        return  # session.run([]) would return every graph output
    proto = onnx.ModelProto()
    proto.CopyFrom(float_proto)
    known = {output.name for output in proto.graph.output}
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in tensors if t not in known)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for start in range(0, len(images), batch_size):
        values = session.run(tensors, {INPUT_NAME: images[start : start + batch_size]})
        yield dict(zip(tensors, values, strict=True))


def channel_means(float_proto, tensors: list[str], images: np.ndarray, batch_size: int = 16) -> dict:
    """Per-channel mean (axis 1) of each of ``tensors`` of the model ``float_proto`` (float or
    QDQ) over ``images`` (uint8 [N, H, W, 3]) -> {tensor: float64 [C]}."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for batch in float_tensors(float_proto, tensors, images, batch_size):
        for name, value in batch.items():
            axes = tuple(i for i in range(value.ndim) if i != 1)
            sums[name] = sums.get(name, 0) + value.astype(np.float64).sum(axis=axes)
            counts[name] = counts.get(name, 0) + value.size // value.shape[1]
    return {name: sums[name] / counts[name] for name in tensors}


def _output_shift(node, weight_error: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """E[(W_q - W) x] per output channel of a Conv (any group) or Gemm, for inputs of mean ``mean``."""
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return (weight_error if trans_b else weight_error.T) @ mean
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    per_channel = weight_error.reshape(weight_error.shape[0], weight_error.shape[1], -1).sum(axis=2)
    outputs_per_group = weight_error.shape[0] // group
    group_means = mean.reshape(group, -1)[np.arange(weight_error.shape[0]) // outputs_per_group]
    return np.sum(per_channel * group_means, axis=1)


@dataclass(frozen=True)
class QuantizedLayer:
    """A quantized Conv/Gemm of a QDQ model whose input and weights are dequantized: its node, the
    float tensor it reads (name in the float model), its float weights and the DequantizeLinear
    nodes of its weights and of its int32 bias (None without a dequantized bias)."""

    node: object
    input: str
    float_weight: np.ndarray
    weight_dq: object
    bias_dq: object | None


def quantized_layers(int8_proto, float_proto) -> list[QuantizedLayer]:
    """Every quantized Conv/Gemm of ``int8_proto`` (graph order) whose input is Q(x) -> DQ of a
    float tensor x of ``float_proto`` and whose weights (and bias, if any) are dequantized constants."""
    from onnx import numpy_helper

    producers = {output: node for node in int8_proto.graph.node for output in node.output}
    constants = {init.name for init in int8_proto.graph.initializer}
    float_weights = {init.name: numpy_helper.to_array(init) for init in float_proto.graph.initializer}
    float_nodes = {node.name: node for node in float_proto.graph.node}
    float_outputs = {output for node in float_proto.graph.node for output in node.output}
    layers = []
    for node in int8_proto.graph.node:
        if node.op_type not in _LAYERS or node.name not in float_nodes:
            continue
        data_dq, weight_dq = (producers.get(name) for name in node.input[:2])
        bias_dq = producers.get(node.input[2]) if len(node.input) > 2 else None
        if not (_is_dq(bias_dq) and bias_dq.input[0] in constants):
            bias_dq = None  # no bias, or a float one: nothing to correct
        original = float_weights.get(float_nodes[node.name].input[1])
        quantize = producers.get(data_dq.input[0]) if _is_dq(data_dq) else None  # Q(x) -> DQ -> layer
        if (
            original is None
            or not _is_dq(weight_dq)
            or weight_dq.input[0] not in constants
            or quantize is None
            or quantize.op_type != "QuantizeLinear"
            or quantize.input[0] not in float_outputs
        ):
            continue
        layers.append(QuantizedLayer(node, quantize.input[0], original, weight_dq, bias_dq))
    return layers


def _is_dq(node) -> bool:
    return node is not None and node.op_type == "DequantizeLinear"


def _lower_bias(int8_proto, bias_dq, shift: np.ndarray) -> None:
    """Subtract ``shift`` (float, per output channel) from the int32 bias behind ``bias_dq``."""
    from onnx import numpy_helper

    init = next(i for i in int8_proto.graph.initializer if i.name == bias_dq.input[0])
    scale_init = next(i for i in int8_proto.graph.initializer if i.name == bias_dq.input[1])
    quantized, scale = numpy_helper.to_array(init), numpy_helper.to_array(scale_init).astype(np.float64)
    info = np.iinfo(quantized.dtype)
    corrected = np.clip(np.round(quantized - shift / scale), info.min, info.max).astype(quantized.dtype)
    init.CopyFrom(numpy_helper.from_array(corrected, bias_dq.input[0]))


def correct_biases(int8_proto, float_proto, images: np.ndarray) -> int:
    """Lower the (int32, dequantized) bias of every quantized Conv/Gemm of ``int8_proto`` by its
    mean output shift from weight rounding, (W_q - W) E[x], in place; ``float_proto`` is the float
    model it was quantized from (same tensor and initializer names), E[x] measured on ``images``.
    Returns how many layers were corrected.

    Only this analytical correction (measured on a trained efficientnet_lite0): correcting every
    layer at once by its measured int8 - fp32 output shift counts upstream shifts twice (agreement
    fell from 96.8 to 38.7 %); doing it layer by layer after this one (one partial model run per
    layer) gained 0.25 / 0.5 point (proto / svm) for 3.5x the quantization time."""
    from onnx import numpy_helper

    layers = [layer for layer in quantized_layers(int8_proto, float_proto) if layer.bias_dq is not None]
    constants = {init.name: numpy_helper.to_array(init) for init in int8_proto.graph.initializer}
    means = channel_means(float_proto, sorted({layer.input for layer in layers}), images)
    for layer in layers:
        weight_error = dequantized(constants, layer.weight_dq) - layer.float_weight
        _lower_bias(int8_proto, layer.bias_dq, _output_shift(layer.node, weight_error, means[layer.input]))
    return len(layers)
