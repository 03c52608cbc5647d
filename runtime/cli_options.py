"""Click options shared by the runtime's commands (``rfmml-infer``, ``rfmml-enroll``): the model and the
onnxruntime session settings, declared once so both commands parse them alike; and what
``rfmml-infer``'s flags parse into (:class:`InferOptions`, ``--bands``, ``--head``)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from rfmml.runtime.heads import HEAD_KINDS


def file_path(**kwargs: Any) -> click.Path:
    """A click path that arrives as a ``pathlib.Path``."""
    return click.Path(path_type=Path, **kwargs)


def cap_to_cpus(flag: str, value: int) -> int:
    """``value`` threads, at most one per CPU (more only contend): a one-line warning when capped."""
    cpus = os.cpu_count() or 1
    if value > cpus:
        warnings.warn(f"{flag} {value} is more than the {cpus} CPUs here; using {cpus}", stacklevel=2)
        return cpus
    return value


MODEL_OPTION = click.option(
    "--model", "-m", required=True, type=file_path(dir_okay=False), help="Exported model.onnx."
)


def session_options(default_providers: str, providers_help: str) -> Callable:
    """Decorator adding ``--providers`` and ``--threads`` (capped to the CPU count, with a warning)."""

    def decorate(command: Callable) -> Callable:
        command = click.option(
            "--threads",
            default=0,
            type=click.IntRange(min=0),
            callback=lambda _ctx, _param, value: cap_to_cpus("--threads", value),
            help="onnxruntime intra-op threads (0 = one per core; more than the CPUs: capped).",
        )(command)
        return click.option("--providers", default=default_providers, show_default=True, help=providers_help)(
            command
        )

    return decorate


def parse_bands(value: str | None) -> tuple[int, int, int] | None:
    """``--bands 1,2,3`` -> (1, 2, 3); a click usage error (one line) for anything else."""
    if value is None:
        return None
    try:
        bands = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected three band numbers like 1,2,3, got {value!r}", param_hint="'--bands'"
        ) from None
    if len(bands) != 3 or min(bands) < 1:
        raise click.BadParameter(
            f"expected three 1-based band numbers like 1,2,3, got {value!r}", param_hint="'--bands'"
        )
    return bands  # type: ignore[return-value]


def split_head(values: tuple[str, ...]) -> tuple[str, Path | None]:
    """``--head`` values -> (kind, head file or None): a kind is proto/svm, anything else a file."""
    kind, file = "proto", None
    for value in values:
        if value.lower() in HEAD_KINDS:
            kind = value.lower()
        else:
            file = Path(value)
    return kind, file


@dataclass(frozen=True)
class InferOptions:
    """Every setting of one ``rfmml-infer`` run (what the flags parse into)."""

    model: Path
    input: Path  # the first INPUT (the only one unless several scenes are given)
    out: Path | None = None
    head_file: Path | None = None
    head: str = "proto"
    providers: str = "auto"
    threads: int = 0
    batch: int = 64
    top_k: int = 3
    workers: int = 0
    tile: int | None = None
    stride: int | None = None
    bands: tuple[int, int, int] | None = None
    zero_collar: bool = True
    csv: Path | None = None
    quicklook: Path | None = None
    quicklook_size: int = 1024
    quiet: bool = False
    inputs: tuple[Path, ...] = ()  # every INPUT; more than one: a multi-scene run
    dask: str | None = None  # a Dask scheduler address: a multi-scene run on its workers

    @property
    def several_scenes(self) -> bool:
        """Whether this is a multi-scene run (several inputs, --dask, or --out an existing folder)."""
        out_is_folder = self.out is not None and self.out.is_dir() and not self.input.is_dir()
        return len(self.inputs) > 1 or self.dask is not None or out_is_folder
