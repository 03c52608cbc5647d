"""The one error type for bad user input: the CLI prints its message on one line and exits 2."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input (data, flags, split file); ``str(error)`` is one line for the user."""
