"""Run a click command as a function: ``main(argv) -> exit code`` for tests and other programs."""

from __future__ import annotations

import click


def run_command(command: click.Command, argv: list[str] | None) -> int:
    """Invoke ``command`` on ``argv``; return its exit code (0, the code of a ``sys.exit``, or 2 for
    a usage error shown as click shows it) instead of raising SystemExit."""
    try:
        command.main(args=argv, standalone_mode=False)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except click.exceptions.Exit as done:  # --help
        return done.exit_code
    except click.ClickException as error:
        error.show()
        return 2
    return 0
