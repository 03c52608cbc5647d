"""EmbeddingNet -> ONNX bytes, following the artifact contract.

Contract (DESIGN "Artifact contract"; the names are ``rfmml.runtime.artifact``'s): input ``images``
uint8 [batch, H, W, 3] (NHWC, RGB), output ``embeddings`` float32 [batch, D], batch dynamic; the
cast, scaling, normalisation and NHWC -> NCHW transpose live inside the graph (they are part of
``EmbeddingNet``). One file (no external data), below 2 GB, the opset asked for (18 to the
exporter's maximum, see ``rfmml.export.options``), ``onnx.checker.check_model(full_check=True)``
passes.

The model is serialised in memory: the caller writes the bytes (atomically, with the head) and the
digest is computed on exactly those bytes.
"""

from __future__ import annotations

import copy
import io
import re
import warnings
from contextlib import redirect_stdout
from typing import TYPE_CHECKING

from rfmml.export.options import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from rfmml.runtime.artifact import INPUT_NAME, OUTPUT_NAME
from rfmml.runtime.errors import ExportError

if TYPE_CHECKING:  # torch loads when a model is exported, not when this module is imported
    from torch import nn

MAX_ONNX_BYTES = 2**31 - 1  # protobuf's limit for a single file without external data

# onnx TensorProto element types used by the contract
_UINT8, _FLOAT, _FLOAT16 = 2, 1, 10


def export_onnx(
    model: nn.Module,
    input_size: tuple[int, int],
    opset: int = DEFAULT_OPSET,
    example_batch: int = 2,
) -> bytes:
    """Export ``model`` (uint8 [B, H, W, 3] -> float32 [B, D]) and return the checked ONNX bytes.

    ``input_size`` is (H, W). The example batch must be >= 2: with 1 the exporter can specialise the
    batch dimension to a constant. Uses the dynamo exporter with ``torch.export.Dim`` for the batch.
    """
    import torch

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported: choose {MIN_OPSET} to {MAX_OPSET}")
    if example_batch < 2:
        raise ExportError("the example batch must be 2 or more (batch 1 fixes the batch dimension)")
    height, width = (int(v) for v in input_size)
    model = model.eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.randint(0, 256, (example_batch, height, width, 3), dtype=torch.uint8, generator=generator)
    batch = torch.export.Dim("batch", min=1)
    buffer = io.StringIO()
    with warnings.catch_warnings(), redirect_stdout(buffer):
        warnings.simplefilter("ignore")  # the exporter's progress chatter and deprecation notes
        try:
            program = torch.onnx.export(
                model,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={INPUT_NAME: {0: batch}},
                dynamo=True,
                external_data=False,
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
        except torch.onnx.OnnxExporterError as error:  # the network cannot be expressed at this opset
            raise _exporter_failure(error, opset) from None
    data = program.model_proto.SerializeToString()
    check_onnx(data, opset=opset)
    return data


def _exporter_failure(error: BaseException, opset: int) -> BaseException:
    """What to raise for an exporter failure: KeyboardInterrupt when Ctrl-C caused it (torch wraps an
    interrupt that hits its lazy imports into an OnnxExporterError), else a one-line ExportError
    naming the root cause (the exporter's own message is a multi-line report with colour codes)."""
    causes, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        causes.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(cause, KeyboardInterrupt) for cause in causes):
        return KeyboardInterrupt()
    root = causes[-1]
    reason = re.sub(r"\x1b\[[0-9;]*m", "", str(root)).strip().splitlines()
    return ExportError(
        f"torch.onnx cannot export this model at opset {opset}: {type(root).__name__}: "
        f"{reason[0] if reason else 'no message'}"
    )


def half_precision(model: nn.Module) -> nn.Module:
    """A float16 copy of an EmbeddingNet whose input stays uint8 and output float32.

    ``EmbeddingNet.forward`` casts the uint8 pixels to the dtype of its pre-processing buffers and
    casts the backbone's output to float32, so ``.half()`` on a copy is all it takes.
    """
    return copy.deepcopy(model).half().eval()


def check_onnx(data: bytes, float_dtypes: tuple[int, ...] = (_FLOAT,), opset: int | None = None) -> None:
    """Check serialised ONNX bytes against the contract; raise ExportError (one line) if not met.

    Checks: size < 2 GB, ``check_model(full_check=True)``, one input ``images`` uint8 of rank 4 with a
    symbolic batch and 3 channels last, one output ``embeddings`` float32 of rank 2, opset >= 18 and,
    when ``opset`` is given, exactly that opset (torch falls back to another one silently when it
    cannot convert).
    """
    import onnx

    if len(data) > MAX_ONNX_BYTES:
        raise ExportError(f"the ONNX model is {len(data) / 2**30:.2f} GB, over the 2 GB single-file limit")
    proto = onnx.load_from_string(data)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"the exported ONNX model fails onnx.checker: {first}") from None
    found = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if found < MIN_OPSET or (opset is not None and found != opset):
        wanted = f"opset {opset}" if opset is not None else f"opset {MIN_OPSET} or more"
        raise ExportError(f"the exported ONNX model has opset {found}, not {wanted}")
    inputs, outputs = list(proto.graph.input), list(proto.graph.output)
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
        raise ExportError(
            f"the exported model has inputs {[i.name for i in inputs]} and outputs "
            f"{[o.name for o in outputs]}, not [{INPUT_NAME!r}] -> [{OUTPUT_NAME!r}]"
        )
    in_type, out_type = inputs[0].type.tensor_type, outputs[0].type.tensor_type
    in_dims = in_type.shape.dim
    if in_type.elem_type != _UINT8 or len(in_dims) != 4 or in_dims[3].dim_value != 3:
        raise ExportError("the exported model's input is not uint8 [batch, H, W, 3]")
    if not in_dims[0].dim_param:
        raise ExportError("the exported model's batch dimension is fixed, not dynamic")
    if out_type.elem_type not in float_dtypes or len(out_type.shape.dim) != 2:
        raise ExportError("the exported model's output is not float32 [batch, D]")
