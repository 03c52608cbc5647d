"""Click options shared by the runtime's commands (``rfmml-infer``, ``rfmml-enroll``): the model and the
onnxruntime session settings, declared once so both commands parse them alike."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


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
