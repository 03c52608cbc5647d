"""``rfmml-infer``: classify a folder of tiles, or tile and classify a large scene.

click only parses flags into :class:`InferOptions`; :func:`run` does the work and :func:`main` maps
errors to exit codes: 0 success, 1 some files in a folder could not be read (the rest were
classified), 2 bad input (missing/mismatched/corrupt model or head, unreadable scene, bad flags),
with a one-line message and no traceback (set RFMML_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import click

from rfmml.runtime.artifact import ArtifactError
from rfmml.runtime.heads import HEAD_KINDS
from rfmml.runtime.imageio import ImageReadError
from rfmml.runtime.scene_io import SceneError, have_rasterio

PROG = "rfmml-infer"
EXAMPLES = """\b
Examples:
  rfmml-infer --model model.onnx tiles/ --out predictions.csv
  rfmml-infer --model model.onnx scene.tif --out classmap.tif --quicklook look.png
  rfmml-infer --model model.onnx scene.jpg --tile 256 --stride 128 --out classmap.png --head svm
  rfmml-infer --model model.onnx naip.tif --bands 1,2,3 --providers cpu --threads 2

\b
INPUT is a folder (every JPEG/PNG/TIFF under it, recursively -> CSV of path, class, score, top-k)
or one scene file (tiled per the tiling contract -> class map .tif/.png + per-tile CSV).
The head is read from MODEL with .npz unless --head names a file; its digest must match MODEL.
Exit codes: 0 ok, 1 some folder files unreadable (listed; the rest classified), 2 bad input.
"""


@dataclass(frozen=True)
class InferOptions:
    """Every setting of one ``rfmml-infer`` run (what the flags parse into)."""

    model: Path
    input: Path
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


def _parse_bands(value: str | None) -> tuple[int, int, int] | None:
    if value is None:
        return None
    try:
        bands = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected three band numbers like 1,2,3, got {value!r}") from None
    if len(bands) != 3 or min(bands) < 1:
        raise click.BadParameter(f"expected three 1-based band numbers like 1,2,3, got {value!r}")
    return bands  # type: ignore[return-value]


def _split_head(values: tuple[str, ...]) -> tuple[str, Path | None]:
    kind, file = "proto", None
    for value in values:
        if value.lower() in HEAD_KINDS:
            kind = value.lower()
        else:
            file = Path(value)
    return kind, file


@click.command(name=PROG, epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "-m", required=True, type=click.Path(path_type=Path), help="Exported model.onnx.")
@click.argument("input", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder: predictions CSV (default stdout). Scene: class map .tif (GeoTIFF) or .png "
    "(default ./<scene>_classmap.tif when georeferenced, else .png).",
)
@click.option(
    "--head",
    "heads",
    multiple=True,
    metavar="proto|svm|FILE.npz",
    help="Head kind (default proto) and/or head file (default MODEL with .npz); repeatable.",
)
@click.option(
    "--providers",
    default="auto",
    show_default=True,
    help="auto (CUDA only when a GPU really works, else CPU), cpu, cuda, or a comma list.",
)
@click.option(
    "--threads",
    default=0,
    type=click.IntRange(min=0),
    help="onnxruntime intra-op threads (0 = one per core).",
)
@click.option(
    "--batch", default=64, show_default=True, type=click.IntRange(min=1), help="Tiles per model call."
)
@click.option(
    "--top-k", default=3, show_default=True, type=click.IntRange(min=1), help="Classes reported per tile."
)
@click.option(
    "--workers", default=0, type=click.IntRange(min=0), help="Folder decode threads (0 = min(8, CPUs))."
)
@click.option(
    "--tile", default=None, type=click.IntRange(min=1), help="Scene tile side in px (default: model input)."
)
@click.option(
    "--stride", default=None, type=click.IntRange(min=1), help="Scene tile step in px (default: tile)."
)
@click.option("--bands", default=None, metavar="R,G,B", help="1-based bands used as RGB (rasterio scenes).")
@click.option(
    "--zero-collar/--no-zero-collar",
    default=True,
    show_default=True,
    help="Without a declared nodata/mask, treat black (0,0,0) pixels as nodata.",
)
@click.option(
    "--csv",
    "csv_path",
    default=None,
    type=click.Path(path_type=Path),
    help="Scene: per-tile CSV (default: OUT with .csv).",
)
@click.option(
    "--quicklook", default=None, type=click.Path(path_type=Path), help="Scene: write a quick-look PNG."
)
@click.option(
    "--quicklook-size",
    default=1024,
    show_default=True,
    type=click.IntRange(min=16),
    help="Longer side of the quick-look in px.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
def command(model, input, out, heads, providers, threads, batch, top_k, workers, tile, stride, bands,
            zero_collar, csv_path, quicklook, quicklook_size, quiet) -> InferOptions:  # fmt: skip
    """Classify a folder of tiles or a large scene with an exported rfmml model (onnxruntime only)."""
    kind, head_file = _split_head(heads)
    return InferOptions(
        model=model, input=input, out=out, head_file=head_file, head=kind, providers=providers,
        threads=threads, batch=batch, top_k=top_k, workers=workers, tile=tile, stride=stride,
        bands=_parse_bands(bands), zero_collar=zero_collar, csv=csv_path, quicklook=quicklook,
        quicklook_size=quicklook_size, quiet=quiet,
    )  # fmt: skip


def parse_args(argv: list[str] | None) -> InferOptions | int:
    """Options, or an exit code when click handled the call itself (--help: 0; usage error: 2)."""
    try:
        result = command.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.exceptions.Abort:
        return 130
    except click.ClickException as error:
        print(f"{PROG}: error: {error.format_message()}", file=sys.stderr)
        return 2
    return result if isinstance(result, InferOptions) else int(result or 0)


def run(options: InferOptions, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Do one run; returns the exit code (0, or 1 when folder files failed). Raises on bad input."""
    from rfmml.runtime.classifier import Classifier
    from rfmml.runtime.progress import Progress

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if not options.input.exists():
        raise FileNotFoundError(f"input not found: {options.input}")
    is_folder = options.input.is_dir()
    if not is_folder:
        _check_scene_outputs(options)
    else:
        scene_only = {"--tile": options.tile, "--stride": options.stride, "--bands": options.bands,
                      "--csv": options.csv, "--quicklook": options.quicklook}  # fmt: skip
        given = [flag for flag, value in scene_only.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply to scenes; {options.input} is a folder of tiles")
    clf = Classifier.load(
        options.model,
        options.head_file,
        head=options.head,
        providers=options.providers,
        threads=options.threads,
    )
    info = stderr if (is_folder and options.out is None) else stdout
    height, width = clf.input_size
    print(
        f"model {options.model} ({len(clf.class_names)} classes, input {height}x{width}, "
        f"head {clf.head_kind}); providers in use: {clf.providers}",
        file=info,
    )
    progress = Progress(
        label="classifying", unit="images" if is_folder else "tiles", enabled=not options.quiet
    )
    if is_folder:
        return _run_folder(clf, options, progress, info, stdout)
    return _run_scene(clf, options, progress, info)


def _check_scene_outputs(options: InferOptions) -> None:
    for path in (options.out, options.csv, options.quicklook):
        if path is not None and not path.parent.is_dir():
            raise FileNotFoundError(f"output folder does not exist: {path.parent}")
    if options.out is not None:
        suffix = options.out.suffix.lower()
        if suffix not in (".tif", ".tiff", ".png"):
            raise ValueError(f"--out {options.out}: a scene's class map is .tif/.tiff (GeoTIFF) or .png")
        if suffix != ".png" and not have_rasterio():
            raise SceneError(
                f'--out {options.out}: writing a GeoTIFF class map needs rasterio: pip install "rfmml[geo]"'
            )


def _run_folder(clf, options: InferOptions, progress, info: TextIO, stdout: TextIO) -> int:
    from rfmml.runtime.folder import write_folder_csv

    if options.out is not None and not options.out.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {options.out.parent}")
    result = clf.classify_folder(options.input, batch=options.batch, top_k=options.top_k,
                                 workers=options.workers, progress=progress)  # fmt: skip
    if options.out is None:
        write_folder_csv(result, stdout)
    else:
        with open(options.out, "w", newline="", encoding="utf-8") as handle:
            write_folder_csv(result, handle)
        print(f"predictions: {options.out}", file=info)
    for line in result.summary_lines():
        print(line, file=info)
    return 1 if result.failed else 0


def _run_scene(clf, options: InferOptions, progress, info: TextIO) -> int:
    from rfmml.runtime.api import write_scene_outputs
    from rfmml.runtime.outputs import summary_lines

    result = clf.classify_scene(options.input, tile=options.tile, stride=options.stride, batch=options.batch,
                                top_k=options.top_k, bands=options.bands, zero_collar=options.zero_collar,
                                progress=progress)  # fmt: skip
    out = options.out
    if out is None:
        suffix = ".tif" if (result.georeferenced and have_rasterio()) else ".png"
        out = Path(f"{options.input.stem}_classmap{suffix}")
    written = write_scene_outputs(result, out, csv=options.csv, quicklook=options.quicklook,
                                  quicklook_size=options.quicklook_size)  # fmt: skip
    for line in summary_lines(result):
        print(line, file=info)
    print(f"class map: {written.class_map}", file=info)
    print(f"tiles CSV: {written.csv}", file=info)
    if written.quicklook is not None:
        print(f"quick-look: {written.quicklook}", file=info)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point callable from Python: ``main(["--model", "m.onnx", "tiles/"]) -> exit code``."""
    parsed = parse_args(list(argv) if argv is not None else sys.argv[1:])
    if isinstance(parsed, int):
        return parsed
    try:
        return run(parsed)
    except BrokenPipeError:
        raise
    except (ArtifactError, SceneError, ImageReadError, FileNotFoundError, ValueError, OSError) as error:
        if os.environ.get("RFMML_DEBUG"):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def cli() -> None:
    """Console script ``rfmml-infer``."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # stdout closed early (e.g. piped into head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    sys.exit(code)
