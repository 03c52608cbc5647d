"""One shell for every rfmml command: the same messages and exit codes everywhere.

    0    success
    1    an internal error (a bug): one line, and ``RFMML_DEBUG=1`` prints the traceback
    2    a user error (bad flag or value, missing or bad input, unwritable output): one line
    3    finished, but some inputs were skipped (e.g. unreadable files in a tile folder; listed)
    130  interrupted (Ctrl-C)
    141  stdout closed early (e.g. piped into ``head``)

Every message is ``<prog>: error: <one line>`` on stderr. Warnings are one line each too. A command's
callback may return an int: that is its exit code (0 when it returns None).
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence

import click

from rfmml.runtime.errors import RfmmlError

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
DEBUG_VARIABLE = "RFMML_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def one_line(text: str) -> str:
    """``text`` folded onto one line (a library's multi-line message stays readable in a log)."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return "; ".join(lines)


def say_error(prog: str, message: str) -> None:
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)


def os_error_message(error: OSError) -> str:
    """``OSError`` as "what: which file" (e.g. "Permission denied: /out/map.tif")."""
    what = error.strerror or str(error) or type(error).__name__
    names = [n for n in (error.filename, getattr(error, "filename2", None)) if n]
    return f"{what}: {' -> '.join(os.fsdecode(n) for n in names)}" if names else what


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's StringIO): nothing to silence
        return


def run_command(command: click.Command, argv: Sequence[str] | None, prog: str) -> int:
    """Run ``command`` on ``argv`` (None: ``sys.argv[1:]``); return the exit code, never raise."""
    previous = warnings.showwarning
    warnings.showwarning = lambda message, *_args, **_kw: print(
        f"{prog}: warning: {one_line(str(message))}", file=sys.stderr
    )
    try:
        result = command.main(
            args=list(argv) if argv is not None else None, prog_name=prog, standalone_mode=False
        )
        sys.stdout.flush()
        return result if isinstance(result, int) else EXIT_OK
    except click.exceptions.Exit as done:  # --help, --version, ctx.exit(code)
        return done.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except click.ClickException as error:
        return _fail(prog, error.format_message(), EXIT_USER)
    except RfmmlError as error:
        return _fail(prog, str(error), EXIT_USER)
    except OSError as error:  # unwritable output, full disk, missing file: the user can act on it
        return _fail(prog, os_error_message(error), EXIT_USER)
    except Exception as error:  # a bug: one line, the traceback on request
        return _fail(
            prog,
            f"internal error: {type(error).__name__}: {one_line(str(error))} "
            f"(set {DEBUG_VARIABLE}=1 for the traceback)",
            EXIT_INTERNAL,
        )
    finally:
        warnings.showwarning = previous


def _fail(prog: str, message: str, code: int) -> int:
    if debug_enabled():
        traceback.print_exc()
    say_error(prog, message)
    return code


def entry_point(command: click.Command, prog: str) -> Callable[[], None]:
    """A console-script function for ``command``: runs it on ``sys.argv`` and exits with its code."""

    def console_script() -> None:
        sys.exit(run_command(command, None, prog))

    console_script.__doc__ = f"Console script ``{prog}``."
    return console_script
