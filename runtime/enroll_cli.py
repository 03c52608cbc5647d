"""``rfmml-enroll``: add, replace or remove classes of an exported head, with the runtime alone.

click parses the flags into :class:`EnrollOptions`; :func:`run` checks the paths, loads the pair,
applies :func:`rfmml.runtime.enroll.enrol` and writes the new head atomically; the shared shell
(:func:`rfmml.runtime.cli_shell.run_command`) turns errors into one line and an exit code. Importing
this module loads neither onnxruntime nor torch, so ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from rfmml.runtime.cli_options import MODEL_OPTION, file_path, session_options
from rfmml.runtime.cli_shell import entry_point, run_command
from rfmml.runtime.errors import InputError

PROG = "rfmml-enroll"
EXAMPLES = """\b
Examples:
  rfmml-enroll --model model.onnx --head model.npz --add Greenhouses tiles/greenhouses/ \\
               --add FloodedField tiles/flooded/ --out model-v2.npz
  rfmml-enroll --model model.onnx --head model-v2.npz --replace River tiles/river-2026/ --out model-v3.npz
  rfmml-enroll --model model.onnx --head model-v3.npz --remove Highway --out model-v4.npz
  rfmml-infer  --model model.onnx --head model-v4.npz scene.tif --out map.tif

\b
The prototype of an added class is the mean of the model's embeddings of its tiles (every image
file under DIR, decoded and resized exactly as rfmml-infer does; any unreadable one stops the run,
named). --replace recomputes a class in place, --remove drops one (at least 2 classes remain),
--add appends one; the other classes keep their order. An enrolled class is counted as a minority
class unless it has as many tiles as the smallest majority class.
The new head is bound to the same model, and records each change (class, number of tiles, sha256 of
the tiles, date). An SVM part cannot stay valid without its training data: it is dropped, with a
one-line notice, and the Proto head serves.
--out is written atomically, never over --head unless --force, never over --model.

\b
Exit codes: 0 ok; 2 bad input or unwritable output (one line, nothing written); 1 internal error
(RFMML_DEBUG=1 for the traceback); 130 interrupted.
"""


@dataclass(frozen=True)
class EnrollOptions:
    """Every setting of one ``rfmml-enroll`` run (what the flags parse into)."""

    model: Path
    out: Path
    head_file: Path | None = None
    adds: tuple[tuple[str, Path], ...] = ()
    replaces: tuple[tuple[str, Path], ...] = ()
    removes: tuple[str, ...] = ()
    force: bool = False
    providers: str = "cpu"
    threads: int = 0


_CLASS_AND_FOLDER = click.Tuple([str, file_path()])


@click.command(name=PROG, epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@MODEL_OPTION
@click.option(
    "--head",
    "head_file",
    type=file_path(dir_okay=False),
    default=None,
    help="Head to start from (default: MODEL with .npz).",
)
@click.option("--add", "adds", multiple=True, nargs=2, type=_CLASS_AND_FOLDER, metavar="NAME DIR",
              help="Add class NAME from the tiles under DIR (repeatable).")  # fmt: skip
@click.option("--replace", "replaces", multiple=True, nargs=2, type=_CLASS_AND_FOLDER, metavar="NAME DIR",
              help="Recompute class NAME from the tiles under DIR (repeatable).")  # fmt: skip
@click.option("--remove", "removes", multiple=True, metavar="NAME", help="Drop class NAME (repeatable).")
@click.option("--out", "-o", required=True, type=file_path(dir_okay=False), help="The new head file (.npz).")
@click.option("--force", is_flag=True, help="Allow --out to be the --head file (overwrite it).")
@session_options("cpu", "onnxruntime providers: cpu (enough for a few tiles), cuda, auto, a list.")
def command(model, head_file, adds, replaces, removes, out, force, providers, threads) -> int:  # fmt: skip
    """Add, replace or remove classes of an exported rfmml head (onnxruntime only, no retraining)."""
    options = EnrollOptions(
        model=model, out=out, head_file=head_file, adds=tuple(adds), replaces=tuple(replaces),
        removes=tuple(removes), force=force, providers=providers, threads=threads,
    )  # fmt: skip
    return run(options)


def _check_paths(options: EnrollOptions) -> Path:
    """Refuse an output that would clobber an input or cannot be written, before any work; return
    the head file to start from."""
    from rfmml.runtime.artifact import default_head_path
    from rfmml.runtime.output_files import check_writable, path_text

    head_file = options.head_file if options.head_file is not None else default_head_path(options.model)
    out = options.out.resolve()
    if out == options.model.resolve():
        raise InputError(f"--out {path_text(options.out)} is the model file: name a new .npz")
    if out == head_file.resolve() and not options.force:
        raise InputError(
            f"--out {path_text(options.out)} is the input head: name a new file, or pass --force to "
            "replace it"
        )
    if not options.out.parent.is_dir():
        raise InputError(f"output folder does not exist: {path_text(options.out.parent)}")
    check_writable([options.out])
    return head_file


def run(options: EnrollOptions) -> int:
    """Do one enrolment; returns 0. Raises (one-line RfmmlError) on bad input, nothing written."""
    from rfmml.runtime.artifact import save_head
    from rfmml.runtime.classifier import Classifier
    from rfmml.runtime.enroll import EnrolPlan, enrol
    from rfmml.runtime.output_files import path_text

    head_file = _check_paths(options)
    clf = Classifier.load(options.model, head_file, providers=options.providers, threads=options.threads)
    head = enrol(clf, EnrolPlan(adds=options.adds, replaces=options.replaces, removes=options.removes))
    save_head(options.out, head)
    for record in head.enrolments[len(clf.head.enrolments) :]:
        tiles = (
            f": {record.tiles} tile(s), sha256 {record.sha256[:12]}..." if record.action != "remove" else ""
        )
        print(f"{record.action} {record.class_name}{tiles}")
    print(
        f"head: {len(head.class_names)} classes ({', '.join(head.class_names)}) -> {path_text(options.out)}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point callable from Python: ``main(["--model", "m.onnx", "--add", ...]) -> exit code``."""
    return run_command(command, argv, PROG)


cli = entry_point(command, PROG)
