"""Second-order rounding of a QDQ int8 model's weights: each quantized layer's integer weights are
re-chosen to minimise the error of its OUTPUT on calibration data, not of each weight.

Rounding every weight to nearest minimises |W_q - W| weight by weight, but what matters is the
layer's output error (W_q - W) x, whose mean square is e H e^T per output channel with H = E[x x^T]
the second moment of the layer's input. GPTQ (Frantar et al., "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers", ICLR 2023; after Optimal Brain Quantization)
rounds the input columns one after the other and spreads each column's rounding error over the
columns not yet rounded, through the Cholesky factor of H^-1. The scales and the integer range stay
onnxruntime's (per-channel, symmetric): only the integers change, so speed is unchanged.

Handled: Gemm, Conv 1x1 with group 1 (H over input channels) and depthwise Conv (one H per channel
over its k x k patch, zero padding included). Other layers keep round-to-nearest. H is measured in
the float model on the calibration images. Measured on a trained efficientnet_lite0 (BENCHMARKS.md,
"GPTQ rounding and --int8-weights 8"): with 8-bit weights and bias correction, top-1 agreement with
fp32 98.3 / 98.3 -> 99.0 / 98.85 % (proto / svm), at the cost of minutes of quantization. Tried and
left out: rounding towards the int8 model's own inputs (target W E[x xq^T] E[xq xq^T]^-1): 70 %.
"""

from __future__ import annotations

import numpy as np

from rfmml.export.int8_bias import QuantizedLayer, float_tensors, quantized_layers

DAMPING = 0.01  # added to H's diagonal, as a fraction of its mean (GPTQ's default)
# positions of one batch that enter H, at most (a fixed random subset): the high-resolution layers'
# 65,536 positions per batch of 16 cost most of the time (measured: same agreement with and without)
MAX_ROWS = 4096


def gptq_round(weight: np.ndarray, scale: np.ndarray, bound: int, hessian: np.ndarray) -> np.ndarray:
    """Integers q in [-bound, bound] for ``weight`` [G, R, C] (G independent groups of R output rows
    and C inputs) with per-row ``scale`` [G, R], minimising sum_r (q_r s_r - w_r) H (q_r s_r - w_r)^T
    greedily column by column (GPTQ), ``hessian`` [G, C, C] = E[x x^T] of each group's inputs.
    Returns int64 [G, R, C]; with H diagonal it is round-to-nearest."""
    # columns with the largest input energy first (GPTQ's "act order"): their errors get spread
    order = np.argsort(-np.einsum("gii->gi", hessian), axis=1, kind="stable")
    work = np.take_along_axis(weight.astype(np.float64), order[:, None, :], axis=2)
    hessian = np.take_along_axis(
        np.take_along_axis(hessian.astype(np.float64), order[:, :, None], axis=1), order[:, None, :], axis=2
    )
    index = np.arange(hessian.shape[1])
    diagonal = hessian[:, index, index]
    dead = diagonal == 0  # inputs that are always zero: their weights do not matter
    work[np.broadcast_to(dead[:, None, :], work.shape)] = 0
    diagonal[dead] = 1
    hessian[:, index, index] = diagonal + DAMPING * diagonal.mean(axis=1, keepdims=True)
    inverse = np.linalg.inv(hessian)
    upper = np.swapaxes(np.linalg.cholesky(inverse), 1, 2)  # H^-1 = U^T U
    quantized = np.empty(work.shape, np.int64)
    for column in range(work.shape[2]):
        values = work[:, :, column]
        q = np.clip(np.round(values / scale), -bound, bound)
        quantized[:, :, column] = q
        error = (values - q * scale) / upper[:, column, column][:, None]
        work[:, :, column + 1 :] -= error[:, :, None] * upper[:, None, column, column + 1 :]
    restored = np.empty_like(quantized)
    np.put_along_axis(restored, np.broadcast_to(order[:, None, :], quantized.shape), quantized, axis=2)
    return restored


def conv_attributes(node) -> dict:
    """A Conv node's group, strides, pads, dilations and auto_pad, with ONNX's defaults."""
    values = {
        a.name: (a.i if a.type == a.INT else a.s.decode() if a.type == a.STRING else list(a.ints))
        for a in node.attribute
    }
    return {
        "group": values.get("group", 1),
        "strides": values.get("strides", [1, 1]),
        "pads": values.get("pads", [0, 0, 0, 0]),
        "dilations": values.get("dilations", [1, 1]),
        "auto_pad": values.get("auto_pad", "NOTSET"),
    }


def _positions(count: int) -> np.ndarray | None:
    """Indices of the positions (of ``count``) that enter H: a fixed random MAX_ROWS, or None (all)."""
    if count <= MAX_ROWS:
        return None
    return np.sort(np.random.default_rng(0).choice(count, MAX_ROWS, replace=False))


def _patches(value: np.ndarray, kernel: tuple[int, int], strides, pads, dilations) -> np.ndarray:
    """[B, C, H, W] -> [C, M, kH * kW]: the k x k patches a depthwise Conv reads (zero-padded), at
    the positions of :func:`_positions` (batch, row, column order), copied only there."""
    top, left, bottom, right = pads
    padded = np.pad(value, ((0, 0), (0, 0), (top, bottom), (left, right)))
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    windows = np.lib.stride_tricks.sliding_window_view(padded, span, axis=(2, 3))
    windows = windows[:, :, :: strides[0], :: strides[1], :: dilations[0], :: dilations[1]]
    batch, channels, height, width = windows.shape[:4]
    kept = _positions(batch * height * width)
    if kept is None:
        kept = np.arange(batch * height * width)
    b, i, j = np.unravel_index(kept, (batch, height, width))
    return windows[b, :, i, j].reshape(len(kept), channels, -1).transpose(1, 0, 2)


def _layer_kind(layer: QuantizedLayer) -> str | None:
    """ "dense" (Gemm, Conv 1x1 group 1), "depthwise" or None (left to round-to-nearest)."""
    if layer.node.op_type == "Gemm":
        return "dense"
    weight, attributes = layer.float_weight, conv_attributes(layer.node)
    group = attributes["group"]
    if attributes["auto_pad"] != "NOTSET" or weight.ndim != 4:
        return None
    if group == 1 and weight.shape[2:] == (1, 1):
        return "dense"
    if group > 1 and group == weight.shape[0] and weight.shape[1] == 1:
        return "depthwise"
    return None


def _inputs_as_rows(layer: QuantizedLayer, kind: str, value: np.ndarray) -> np.ndarray:
    """One batch of the layer's input as float32 [G, M, C]: what each group's weights multiply."""
    if kind == "depthwise":
        attributes = conv_attributes(layer.node)
        shape = layer.float_weight.shape[2:]
        rows = _patches(value, shape, attributes["strides"], attributes["pads"], attributes["dilations"])
    else:
        rows = value if value.ndim == 2 else value.transpose(0, 2, 3, 1).reshape(-1, value.shape[1])
        kept = _positions(len(rows))
        rows = (rows if kept is None else rows[kept])[None]
    return np.ascontiguousarray(rows, dtype=np.float32)


def _second_moment(rows: np.ndarray) -> np.ndarray:
    """sum over M of x x^T for inputs [G, M, C] -> float64 [G, C, C] (float32 BLAS per batch)."""
    return np.matmul(rows.transpose(0, 2, 1), rows).astype(np.float64)


def _as_rows(layer: QuantizedLayer, kind: str) -> tuple[np.ndarray, bool]:
    """The float weights as [G, R, C] for :func:`gptq_round`, and whether a Gemm's were transposed."""
    weight = layer.float_weight
    if kind == "depthwise":
        return weight.reshape(weight.shape[0], 1, -1), False
    if layer.node.op_type == "Gemm":
        trans_b = next((a.i for a in layer.node.attribute if a.name == "transB"), 0)
        return (weight if trans_b else weight.T)[None], not trans_b
    return weight.reshape(1, weight.shape[0], -1), False


def round_weights(int8_proto, float_proto, images: np.ndarray) -> int:
    """Re-round the int8 weights of every Gemm, 1x1 and depthwise Conv of ``int8_proto`` with
    :func:`gptq_round`, H measured on ``images`` (uint8 [N, H, W, 3]) in ``float_proto`` (the float
    model it was quantized from), in place. Returns how many layers were re-rounded."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in int8_proto.graph.initializer}
    layers = []
    for layer in quantized_layers(int8_proto, float_proto):
        kind = _layer_kind(layer)
        zero = layer.weight_dq.input[2] if len(layer.weight_dq.input) > 2 else None
        if kind is not None and (zero is None or not numpy_helper.to_array(initializers[zero]).any()):
            layers.append((layer, kind))  # symmetric weights only (onnxruntime's int8 default)
    moments: dict[str, np.ndarray] = {}
    for batch in float_tensors(float_proto, sorted({layer.input for layer, _ in layers}), images):
        for layer, kind in layers:
            x = _inputs_as_rows(layer, kind, batch[layer.input])
            moments[layer.node.name] = moments.get(layer.node.name, 0) + _second_moment(x)
    for layer, kind in layers:
        weight_init = initializers[layer.weight_dq.input[0]]
        current = numpy_helper.to_array(weight_init)
        scale = numpy_helper.to_array(initializers[layer.weight_dq.input[1]]).astype(np.float64)
        rows, transposed = _as_rows(layer, kind)
        row_scale = np.broadcast_to(scale.reshape(-1), (rows.shape[0] * rows.shape[1],))
        bound = int(np.abs(current.astype(np.int64)).max())  # 127, or 64 with reduce_range
        q = gptq_round(rows, row_scale.reshape(rows.shape[:2]), bound, moments[layer.node.name])
        q = q[0].T if transposed else q
        weight_init.CopyFrom(
            numpy_helper.from_array(q.reshape(current.shape).astype(current.dtype), weight_init.name)
        )
    return len(layers)
