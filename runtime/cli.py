"""``rfmml-infer``: classify a folder of tiles, tile and classify a large scene, or many scenes.

click parses and range-checks the flags into :class:`~rfmml.runtime.cli_options.InferOptions`;
:func:`run` does the work (several scenes: :mod:`rfmml.runtime.scene_archive`); the shared shell
(:func:`rfmml.runtime.cli_shell.run_command`) turns errors into one line and an exit code.
Importing this module loads neither onnxruntime nor torch, so ``--help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import click

from rfmml.runtime.cli_options import (
    MODEL_OPTION,
    InferOptions,
    cap_to_cpus,
    file_path,
    parse_bands,
    session_options,
    split_head,
)
from rfmml.runtime.cli_shell import EXIT_OK, EXIT_PARTIAL, entry_point, run_command
from rfmml.runtime.errors import InputError

PROG = "rfmml-infer"
MAX_BATCH = 1024  # tiles per model call
MAX_TILE = 4096  # px per tile side (a tile is at most 4096 x 4096: the tile pixel limit of imageio)
MAX_TOP_K = 10
MAX_QUICKLOOK = 8192
EXAMPLES = """\b
Examples:
  rfmml-infer --model model.onnx tiles/ --out predictions.csv
  rfmml-infer --model model.onnx scene.tif --out classmap.tif --quicklook look.png
  rfmml-infer --model model.onnx scene.jpg --tile 256 --stride 128 --out classmap.png --head svm
  rfmml-infer --model model.onnx naip.tif --bands 1,2,3 --providers cpu --threads 2
  rfmml-infer --model model.onnx scenes/*.tif --out maps/
  rfmml-infer --model model.onnx scenes/*.tif --out maps/ --dask tcp://scheduler:8786 --threads 1

\b
INPUT is a folder (every JPEG/PNG/TIFF under it, recursively -> CSV of path, class, score, top-k)
or one scene file (tiled per the tiling contract -> class map .tif/.png + per-tile CSV).
Several scene files, or one with --out an existing folder, or --dask: each scene's class map and
CSV go to the --out folder as <stem>_classmap.tif/.png and .csv, then a record
<stem>_classmap.done.json; a rerun skips the scenes whose outputs are complete (same model, head
and settings, scene unchanged). --dask ADDRESS runs the scenes on that Dask scheduler's workers
(pip install "rfmml[dask]"; the --out folder must be shared with them).
The head is read from MODEL with .npz unless --head names a file; its digest must match MODEL.
Paths in the CSV are UTF-8; bytes of a file name that are not UTF-8 are written as \\xNN and a
backslash as \\\\, so every name can be recovered exactly.
Outputs are written to temporaries and renamed together when complete: a failed or killed run
leaves the previous outputs as they were (its temporaries are removed by the next run).
Limits: tiles up to 4096 x 4096 px, scenes up to 4,194,304 tiles, JPEG/PNG scenes (decoded whole)
up to 2^28 px (larger: a tiled GeoTIFF, read in windows).

\b
Exit codes: 0 ok; 2 bad input or unwritable output (one line); 3 finished, but some folder
files or scenes failed (listed; the rest classified); 1 internal error (RFMML_DEBUG=1 for the
traceback); 130 interrupted.
"""


@click.command(name=PROG, epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@MODEL_OPTION
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True, type=file_path())
@click.option(
    "--out",
    "-o",
    type=file_path(),
    default=None,
    help="Folder: predictions CSV (default stdout). Scene: class map .tif (GeoTIFF) or .png "
    "(default ./<scene>_classmap.tif when georeferenced, else .png). Several scenes: a folder.",
)
@click.option(
    "--head",
    "heads",
    multiple=True,
    metavar="proto|svm|FILE.npz",
    help="Head kind (default proto) and/or head file (default MODEL with .npz); repeatable.",
)
@session_options("auto", "auto (CUDA only when a GPU really works, else CPU), cpu, cuda, or a comma list.")
@click.option(
    "--batch", default=64, show_default=True, type=click.IntRange(1, MAX_BATCH), help="Tiles per model call."
)
@click.option(
    "--top-k",
    default=3,
    show_default=True,
    type=click.IntRange(1, MAX_TOP_K),
    help="Classes reported per tile.",
)
@click.option(
    "--workers", default=0, type=click.IntRange(min=0), help="Folder decode threads (0 = min(8, CPUs))."
)
@click.option(
    "--tile",
    default=None,
    type=click.IntRange(1, MAX_TILE),
    help="Scene tile side in px (default: model input).",
)
@click.option(
    "--stride", default=None, type=click.IntRange(1, MAX_TILE), help="Scene tile step in px (default: tile)."
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
    type=file_path(dir_okay=False),
    help="Scene: per-tile CSV (default: OUT with .csv).",
)
@click.option(
    "--quicklook", default=None, type=file_path(dir_okay=False), help="Scene: write a quick-look PNG."
)
@click.option(
    "--quicklook-size",
    default=1024,
    show_default=True,
    type=click.IntRange(16, MAX_QUICKLOOK),
    help="Longer side of each quick-look panel in px.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
@click.option(
    "--dask",
    metavar="ADDRESS",
    default=None,
    help='Run the scenes on this Dask scheduler\'s workers (tcp://host:8786; pip install "rfmml[dask]").',
)
def command(model, inputs, out, heads, providers, threads, batch, top_k, workers, tile, stride, bands,
            zero_collar, csv_path, quicklook, quicklook_size, quiet, dask) -> int:  # fmt: skip
    """Classify a folder of tiles, a large scene, or many scenes with an exported rfmml model
    (onnxruntime only)."""
    kind, head_file = split_head(heads)
    options = InferOptions(
        model=model, input=inputs[0], out=out, head_file=head_file, head=kind, providers=providers,
        threads=threads, batch=batch, top_k=top_k,
        workers=cap_to_cpus("--workers", workers), tile=tile, stride=stride, bands=parse_bands(bands),
        zero_collar=zero_collar, csv=csv_path, quicklook=quicklook, quicklook_size=quicklook_size,
        quiet=quiet, inputs=tuple(inputs), dask=dask,
    )  # fmt: skip
    return run(options)


def _check_options(options: InferOptions) -> bool:
    """Refuse what cannot work before any work is done; return whether INPUT is a folder."""
    from rfmml.runtime.output_files import check_writable, path_text

    if not options.input.exists():
        raise InputError(f"input not found: {path_text(options.input)}")
    is_folder = options.input.is_dir()
    if options.out is not None and options.out.is_dir():
        raise InputError(
            f"--out {path_text(options.out)} is a folder: {path_text(options.input)} writes one file"
        )
    if is_folder:
        scene_only = {"--tile": options.tile, "--stride": options.stride, "--bands": options.bands,
                      "--csv": options.csv, "--quicklook": options.quicklook}  # fmt: skip
        given = [flag for flag, value in scene_only.items() if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} apply to scenes; {path_text(options.input)} is a folder")
    elif options.out is not None:
        from rfmml.runtime.outputs import check_class_map_path

        check_class_map_path(options.out)
    outputs = [path for path in (options.out, options.csv, options.quicklook) if path is not None]
    for path in outputs:
        if not path.parent.is_dir():
            raise InputError(f"output folder does not exist: {path_text(path.parent)}")
    if options.out is not None and not is_folder and options.csv is None:
        outputs.append(options.out.with_suffix(".csv"))
    resolved = [path.resolve() for path in outputs]
    if options.input.resolve() in resolved or len(set(resolved)) < len(resolved):
        raise InputError("--out, --csv and --quicklook must be distinct files, none of them INPUT")
    check_writable(outputs)
    return is_folder


def run(options: InferOptions) -> int:
    """Do one run; returns the exit code (0, or 3 when folder files failed). Raises on bad input."""
    from rfmml.runtime.classifier import Classifier
    from rfmml.runtime.output_files import path_text
    from rfmml.runtime.progress import Progress

    if options.several_scenes:
        return _run_scenes(options)
    is_folder = _check_options(options)
    clf = Classifier.load(options.model, options.head_file, head=options.head, providers=options.providers,
                          threads=options.threads)  # fmt: skip
    info = sys.stderr if (is_folder and options.out is None) else sys.stdout
    height, width = clf.input_size
    print(
        f"model {path_text(options.model)} ({len(clf.class_names)} classes, input {height}x{width}, "
        f"head {clf.head_kind}); providers in use: {clf.providers}",
        file=info,
    )
    unit = "images" if is_folder else "tiles"
    progress = Progress(label="classifying", unit=unit, enabled=not options.quiet)
    if is_folder:
        return _run_folder(clf, options, progress, info)
    return _run_scene(clf, options, progress, info)


def _run_folder(clf, options: InferOptions, progress, info: TextIO) -> int:
    from rfmml.runtime.folder import write_folder_csv
    from rfmml.runtime.output_files import StagedOutputs, path_text

    result = clf.classify_folder(options.input, batch=options.batch, top_k=options.top_k,
                                 workers=options.workers, progress=progress)  # fmt: skip
    if options.out is None:
        write_folder_csv(result, sys.stdout)
    else:

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                write_folder_csv(result, handle)

        with StagedOutputs() as staged:
            staged.write(options.out, write)
        print(f"predictions: {path_text(options.out)}", file=info)
    for line in result.summary_lines():
        print(line, file=info)
    return EXIT_PARTIAL if result.failed else EXIT_OK


def _run_scene(clf, options: InferOptions, progress, info: TextIO) -> int:
    from rfmml.runtime.output_files import path_text
    from rfmml.runtime.outputs import summary_lines, write_scene_outputs
    from rfmml.runtime.scene_record import class_map_path

    result = clf.classify_scene(options.input, tile=options.tile, stride=options.stride, batch=options.batch,
                                top_k=options.top_k, bands=options.bands, zero_collar=options.zero_collar,
                                progress=progress)  # fmt: skip
    out = options.out or class_map_path(options.input, Path(), result.georeferenced)
    written = write_scene_outputs(result, out, csv=options.csv, quicklook=options.quicklook,
                                  quicklook_size=options.quicklook_size)  # fmt: skip
    for line in summary_lines(result):
        print(line, file=info)
    print(f"class map: {path_text(written.class_map)}", file=info)
    print(f"tiles CSV: {path_text(written.csv)}", file=info)
    if written.quicklook is not None:
        print(f"quick-look: {path_text(written.quicklook)}", file=info)
    return EXIT_OK


def _run_scenes(options: InferOptions) -> int:
    """Several scenes into the --out folder, here or on a Dask cluster (:mod:`.scene_archive`)."""
    from rfmml.runtime.scene_archive import classify_scenes, outcome_line

    single = {"--csv": options.csv, "--quicklook": options.quicklook}
    given = [flag for flag, value in single.items() if value is not None]
    if given:
        raise InputError(
            f"{', '.join(given)} name one file; with several scenes each gets <stem>_classmap.csv"
        )
    if options.out is None:
        raise InputError("several scenes need --out FOLDER (each scene's outputs are written there)")
    client = None
    if options.dask is not None:
        from rfmml.runtime.dask_scenes import connect

        client = connect(options.dask)
    try:
        summary = classify_scenes(
            options.inputs, model=options.model, out_dir=options.out, head=options.head,
            head_file=options.head_file, client=client,
            report=lambda outcome, done, total: print(outcome_line(outcome, done, total), flush=True),
            providers=options.providers, threads=options.threads, batch=options.batch, top_k=options.top_k,
            tile=options.tile, stride=options.stride, bands=options.bands, zero_collar=options.zero_collar,
        )  # fmt: skip
    finally:
        if client is not None:
            client.close()
    for line in summary.lines():
        print(line)
    return summary.exit_code


def main(argv: list[str] | None = None) -> int:
    """Entry point callable from Python: ``main(["--model", "m.onnx", "tiles/"]) -> exit code``."""
    return run_command(command, argv, PROG)


cli = entry_point(command, PROG)
