"""State-dict files (``--weights``, ``--init``) read safely and fitted onto a backbone.

A file may use torchvision, timm, efficientnet_pytorch or rfmml naming: tensors are matched by name
first (after dropping ``module.`` / ``backbone.`` prefixes, rfmml's ``preprocess.`` buffers and a
classifier the backbone does not have), and otherwise in order, when the file holds exactly as many
tensors as the backbone with the same shapes and the same kinds (``weight``, ``bias``,
``running_mean``, ...), which is how efficientnet_pytorch's ``_blocks.N._bn1.weight`` becomes timm's
``blocks.i.j.bn1.weight``. BatchNorm's ``num_batches_tracked`` counters are not weights: they are
left out of the matching (and keep the model's value). Anything else is a one-line error.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from rfmml.runtime.errors import InputError

# top-level modules that hold an ImageNet classifier: torchvision/timm resnets, timm efficientnets,
# efficientnet_pytorch, pretrainedmodels
CLASSIFIER_MODULES = ("fc", "_fc", "classifier", "last_linear")
COUNTER_SUFFIX = "num_batches_tracked"
WRAPPER_KEYS = ("model", "state_dict", "model_state_dict")  # checkpoints that nest the state dict
STRIPPED_PREFIXES = ("module.", "backbone.")  # DataParallel; rfmml's EmbeddingNet


class WeightsUnavailableError(InputError):
    """Pretrained weights were asked for but are neither cached, reachable nor given as a file."""


class WeightsFileError(WeightsUnavailableError):
    """A weights file is unreadable, not a state dict, or does not fit the backbone."""


def _first_line(error: BaseException) -> str:
    """The first line of an exception's message (torch's unpickling errors run to 20 lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _load_raw(path: Path) -> object:
    """The file's object: safetensors by suffix, else ``torch.load`` restricted to plain tensors."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")  # harmless, two lines
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:  # the message runs to 20 lines; keep the reason
            reasons = [line for line in str(error).splitlines() if "nsupported" in line]
            reason = reasons[0].strip() if reasons else _first_line(error)
            raise WeightsFileError(
                f"{path}: refused: it holds pickled Python objects, not only tensors ({reason}); "
                "rfmml loads plain tensors (torch.load weights_only=True)"
            ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file (``torch.save`` or ``.safetensors``), read without pickle code.

    A checkpoint that nests its weights under ``model`` / ``state_dict`` is unwrapped. Raises
    WeightsFileError (one line) for a missing, unreadable or truncated file, a file that holds
    something other than a mapping of names to tensors, and an empty one.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file not found: {path}")
    try:
        state = _load_raw(path)
    except WeightsFileError:
        raise
    except Exception as error:  # torch/safetensors raise many types for a bad file: one line for all
        raise WeightsFileError(
            f"{path}: not a loadable weights file ({type(error).__name__}: {_first_line(error)})"
        ) from None
    for key in WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping):
        raise WeightsFileError(
            f"{path}: holds a {type(state).__name__}, not a state dict (a mapping of names to tensors)"
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WeightsFileError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor: not a state dict"
            )
    if not state:
        raise WeightsFileError(f"{path}: the state dict is empty")
    return dict(state)


def classifier_modules(model: nn.Module) -> tuple[str, ...]:
    """Module paths whose tensors are an ImageNet classifier: the usual names and timm's own for ``model``."""
    named = getattr(model, "pretrained_cfg", None) or {}
    own = named.get("classifier") or ()
    return (*CLASSIFIER_MODULES, *((own,) if isinstance(own, str) else own))


def _normalise_names(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], classifiers: tuple[str, ...]
) -> dict:
    """Source tensors renamed (prefixes dropped) without counters, rfmml buffers and a foreign classifier."""
    out = {}
    for key, value in source.items():
        for prefix in STRIPPED_PREFIXES:
            key = key.removeprefix(prefix)
        if key.endswith(COUNTER_SUFFIX) or key.startswith("preprocess."):
            continue
        if key not in target and any(key.startswith(f"{name}.") for name in classifiers):
            continue
        out[key] = value
    return out


def _by_name(source: dict, target: dict) -> tuple[dict | None, str]:
    """Match by name: (the matched dict, "") or (None, a summary of the mismatch naming the first one)."""
    unfit = []
    for key, wanted in target.items():
        if key not in source:
            unfit.append(f"{key} is not in the file")
        elif source[key].shape != wanted.shape:
            unfit.append(f"{key} is {list(source[key].shape)} in the file, {list(wanted.shape)} in the model")
    extra = [key for key in source if key not in target]
    if not unfit and not extra:
        return {k: source[k] for k in target}, ""
    first = unfit[0] if unfit else f"{extra[0]} is not in the model"
    counts = f"{len(unfit)} of {len(target)} tensors missing or of another shape, {len(extra)} extra"
    return None, f"{counts} (first: {first})"


def _in_order(source: dict, target: dict) -> dict | None:
    """Match in order (another library's naming): same count, and per pair the same shape and kind."""
    if len(source) != len(target):
        return None
    matched = {}
    for (src_key, value), (key, wanted) in zip(source.items(), target.items(), strict=True):
        if value.shape != wanted.shape or src_key.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1]:
            return None
        matched[key] = value
    return matched


def fit_state_dict(
    source: Mapping[str, torch.Tensor], model: nn.Module, origin: str, backbone_name: str
) -> dict[str, torch.Tensor]:
    """The tensors of ``source`` renamed to ``model``'s state-dict names (counters excluded).

    ``origin`` (the file name) and ``backbone_name`` only word the error: WeightsFileError with how
    many tensors are missing or of another shape, and the first of them; or the first tensor that
    holds NaN or infinite values.
    """
    target = {k: v for k, v in model.state_dict().items() if not k.endswith(COUNTER_SUFFIX)}
    named = _normalise_names(source, target, classifier_modules(model))
    matched, mismatch = _by_name(named, target)
    if matched is None:
        matched = _in_order(named, target)
    if matched is None:
        raise WeightsFileError(
            f"{origin}: weights do not fit {backbone_name}: {mismatch}; nor in order "
            f"({len(named)} tensors in the file, {len(target)} in the model, or shapes differ)"
        )
    for key, value in matched.items():  # NaN weights would train to NaN without another word
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise WeightsFileError(f"{origin}: tensor {key} holds NaN or infinite values")
    return matched


def load_weights_file(backbone: nn.Module, path: str | Path, backbone_name: str = "this backbone") -> None:
    """Load the state-dict file ``path`` into ``backbone`` in place (WeightsFileError if it does not fit)."""
    matched = fit_state_dict(read_state_dict(path), backbone, str(path), backbone_name)
    backbone.load_state_dict(matched, strict=False)  # every weight is there: only counters are left out
