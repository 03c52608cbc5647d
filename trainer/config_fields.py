"""How a training setting is declared, and how one value of it is checked.

Each field of :class:`rfmml.trainer.config.TrainConfig` is declared once with :func:`setting`: its
click type (which holds the range), help text, help section and how its default reads in ``--help``.
From that one declaration ``rfmml-train`` builds its options (rfmml.trainer.cli) and
:func:`check_value` checks a value from ``config.json`` or from Python with the same types, so a
flag, a resumed run and a programmatic config are held to the same rules.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, Field, dataclass, field
from typing import Any

import click

from rfmml.runtime.errors import InputError

# --help sections, in the order they are printed.
RUN = "Run"
SPLIT = "Split (the imbalance protocol; --split reuses one)"
MODEL = "Model"
EPISODIC = "Episodic training (rfmml, its ablations, protonet)"
CROSS_ENTROPY = "Cross-entropy baselines (plain, reweight, resample, logit-adjust)"
HEADS = "Test heads"
PLUMBING = "Plumbing (these may change on --resume)"
SECTIONS = (RUN, SPLIT, MODEL, EPISODIC, CROSS_ENTROPY, HEADS, PLUMBING)


class FiniteFloat(click.FloatRange):
    """A float in a range that must also be finite: click's FloatRange lets nan (every comparison is
    False) and, without a bound on that side, inf through."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class PathName(click.Path):
    """A path that must not be empty: ``Path("")`` is the working folder, so ``--out ""`` would
    write a run there and ``--data ""`` would read it."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "":
            self.fail("an empty path", param, ctx)
        return super().convert(value, param, ctx)


class BackboneName(click.ParamType):
    """A backbone name as rfmml.trainer.models.check_backbone_name accepts it (torch loads lazily)."""

    name = "backbone"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from rfmml.trainer.models import check_backbone_name

        return check_backbone_name(value)  # InputError: one line, names --backbone


@dataclass(frozen=True)
class Setting:
    """The declaration of one TrainConfig field (kept in the field's metadata under "setting").

    type: the click type for the flag and for checking a value (None: the annotation's plain type);
    default_text: how the default reads in --help when the field's default is None (resolved later);
    resume: the flag may change when a run is resumed (where and how it runs, not what it computes).
    """

    help: str
    section: str
    type: click.ParamType | None = None
    default_text: str | None = None
    metavar: str | None = None
    resume: bool = False


def setting(
    default: Any = MISSING,
    *,
    help: str,  # noqa: A002 - click's word for it
    section: str,
    type: click.ParamType | None = None,  # noqa: A002
    default_text: str | None = None,
    metavar: str | None = None,
    resume: bool = False,
) -> Any:
    """A dataclass field declared as a training setting (see :class:`Setting`)."""
    assert section in SECTIONS, section
    spec = Setting(help, section, type, default_text, metavar, resume)
    return field(default=default, metadata={"setting": spec})


def spec_of(item: Field) -> Setting:
    return item.metadata["setting"]


def flag_name(name: str) -> str:
    """The command-line flag of field ``name`` ("ret_lr" -> "--ret-lr")."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Shape:
    """A field's annotation taken apart: ``int | None`` -> (int, optional); ``tuple[str, ...]`` ->
    (str, sequence)."""

    base: type
    optional: bool
    sequence: bool


def shape_of(hint: Any) -> Shape:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return Shape(shape_of(inner).base, True, shape_of(inner).sequence)
    if typing.get_origin(hint) is tuple:
        return Shape(args[0], False, True)
    return Shape(hint, False, False)


_KIND_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _plain(value: Any, base: type, where: str) -> Any:
    """``value`` if its JSON/Python type fits ``base`` (no bool for a number, no 1.5 for an int)."""
    fits = isinstance(value, base) and not (base is not bool and isinstance(value, bool))
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not fits:
        raise InputError(f"{where}: expected {_KIND_WORDS[base]}, got {value!r}")
    return value


def check_value(item: Field, hint: Any, value: Any, where: str) -> Any:
    """``value`` for the field ``item`` checked with the flag's own type and range, or InputError
    ``"<where>: <why>"``. Lists become tuples; ints become floats for a float field."""
    shape = shape_of(hint)
    if value is None:
        if shape.optional:
            return None
        raise InputError(f"{where}: must not be null")
    if shape.sequence:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {value!r}")
        return tuple(_check_one(item, shape.base, v, where) for v in value)
    return _check_one(item, shape.base, value, where)


def _check_one(item: Field, base: type, value: Any, where: str) -> Any:
    value = _plain(value, base, where)
    param_type = spec_of(item).type
    if param_type is None:
        return value
    try:
        return param_type.convert(value, None, None)
    except click.BadParameter as error:
        raise InputError(f"{where}: {error.message}") from None
    except InputError as error:
        raise InputError(f"{where}: {error}") from None
