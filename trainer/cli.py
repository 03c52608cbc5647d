"""``rfmml-train``: its options are generated from TrainConfig's field declarations (rfmml.trainer.config),
the parsed values become ``TrainConfig(**values)``, and everything else lives in rfmml.trainer.run."""

from __future__ import annotations

from dataclasses import MISSING, Field
from typing import Any

import click
from click.core import ParameterSource

from rfmml.runtime.cli_shell import entry_point, run_command
from rfmml.runtime.errors import InputError
from rfmml.trainer.config import HINTS, SETTINGS, TrainConfig, read_config
from rfmml.trainer.config_defaults import DATA_DEFAULTS, HEAD_BUDGET, PAPER_DEFAULTS, SYNTHETIC_DEFAULTS
from rfmml.trainer.config_fields import PLUMBING, RUN, SECTIONS, flag_name, shape_of, spec_of
from rfmml.trainer.config_rules import PROTOCOL_FIELDS, RUN_FOLDER

PROG = "rfmml-train"
EXAMPLES = """
\b
Examples:
  rfmml-train --out runs/demo                       # embedded synthetic set, about a minute on a CPU
  rfmml-train --data ~/EuroSAT --out runs/lite0     # rfmml-plus, lite0 ImageNet (offline), --tune head
  rfmml-train --data ~/EuroSAT --method rfmml --out runs/rfmml   # the paper's method, same backbone
  rfmml-train --data ~/EuroSAT --method frozen --out runs/frozen   # no training: the baseline to beat
  rfmml-train --data ~/AID --preset paper --out runs/paper   # rfmml, wide_resnet50_2, 224 px, 80,000 + 2,000
  rfmml-train --data ~/AID --test-per-class 100 --minority-classes 10 --minority-shots 10 --out runs/aid-s10
  rfmml-train --data ~/tiles --minority River --minority Port --out runs/mine   # natural imbalance
  rfmml-train --data ~/AID --split runs/aid-s10/split.json --seed 2 --out runs/aid-s10-seed2
  rfmml-train --resume runs/aid-s10
"""
HELP_COLUMN_MAX = 30  # a longer flag puts its help on the next line
METAVARS = {int: "INT", float: "FLOAT", str: "TEXT"}
COMMAND_LINE = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT)


class SettingOption(click.Option):
    """An option shown in a --help section, whose default may be a text: a default that is resolved
    at run time (the paper's or the synthetic set's) reads as such instead of being absent."""

    def __init__(self, *args: Any, section: str, default_text: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section
        self.default_text = default_text

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        if self.default_text is not None:
            extra["default"] = self.default_text
        return extra


class SectionedCommand(click.Command):
    """A command whose --help lists its options in sections (SECTIONS, in that order)."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {title: [] for title in SECTIONS}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                rows[getattr(param, "section", RUN)].append(record)
        # one column width for every section, so that the sections line up
        width = min(max(len(term) for records in rows.values() for term, _ in records), HELP_COLUMN_MAX)
        for title, records in rows.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl([(term.ljust(width), text) for term, text in records], col_max=width)


def _shown(value: Any) -> str:
    """A default as --help shows it: 5e-06 -> 5e-6, True -> yes."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}".replace("e-0", "e-")
    return str(value)


def _metavar(param_type: click.ParamType | None, base: type) -> str | None:
    """INT / FLOAT / TEXT; None (click's own) for a flag or a choice, which click shows as [a|b]."""
    return None if base is bool or isinstance(param_type, click.Choice) else METAVARS[base]


def _resolved_default_text(name: str) -> str:
    """How a default resolved at run time reads: real data (with --tune head where it differs),
    --preset paper, the synthetic set."""
    paper, synthetic = PAPER_DEFAULTS[name], SYNTHETIC_DEFAULTS[name]
    texts = [f"paper: {_shown(paper)}", f"synthetic: {_shown(synthetic)}"]
    if name in HEAD_BUDGET:
        texts.insert(0, f"data, --tune head: {_shown(HEAD_BUDGET[name])}")
    elif name in DATA_DEFAULTS:
        texts.insert(0, f"data: {_shown(DATA_DEFAULTS[name])}")
    return "; ".join(texts)


def setting_option(item: Field) -> SettingOption:
    """The click option of one TrainConfig field, from its declaration (type and range, help, default)."""
    spec = spec_of(item)
    shape = shape_of(HINTS[item.name])
    flag = flag_name(item.name)
    default = None if item.default is MISSING else item.default
    default_text = spec.default_text
    if default_text is None and item.name in PAPER_DEFAULTS:
        default_text = _resolved_default_text(item.name)
    is_flag = shape.base is bool
    return SettingOption(
        [f"{flag}/--no-{flag[2:]}" if is_flag else flag],
        type=spec.type,
        multiple=shape.sequence,
        default=default,
        show_default=default not in (None, ()),
        metavar=spec.metavar or _metavar(spec.type, shape.base),
        help=spec.help,
        section=spec.section,
        default_text=default_text,
    )


def _options() -> list[click.Option]:
    """Every TrainConfig field's option in field order, --resume after --out, --no-cache at the end."""
    options = [setting_option(item) for item in SETTINGS.values()]
    return [
        options[0],  # --out
        SettingOption(
            ["--resume"],
            type=RUN_FOLDER,
            metavar="RUN",
            help="Continue the run in this folder from last.pt (with its own settings).",
            section=RUN,
        ),
        *options[1:],
        SettingOption(
            ["--no-cache"],
            is_flag=True,
            help="Do not read or write the decoded-image cache.",
            section=PLUMBING,
        ),
    ]


def _given(ctx: click.Context) -> list[str]:
    """The parameters given on the command line (not left at their defaults)."""
    return [name for name in ctx.params if ctx.get_parameter_source(name) in COMMAND_LINE]


def resumed_config(ctx: click.Context, run_dir: str, no_cache: bool) -> TrainConfig:
    """The config of the run in ``run_dir``, with the flags that may change on resume applied."""
    given = [name for name in _given(ctx) if name not in ("resume", "no_cache")]
    fixed = [name for name in given if not spec_of(SETTINGS[name]).resume]
    if fixed:
        raise InputError(f"--resume takes its settings from the run; drop {flag_name(fixed[0])}")
    overrides = {name: ctx.params[name] for name in given}
    if no_cache:
        overrides["cache_dir"] = ""
    return read_config(run_dir).replace(out=run_dir, **overrides)


def new_config(values: dict[str, Any], no_cache: bool) -> TrainConfig:
    """A new run's config from the parsed settings (every field already checked by its click type)."""
    if values["out"] is None:
        raise InputError("--out RUN is required (or --resume RUN)")
    clash = [name for name in PROTOCOL_FIELDS if values[name] not in (None, ())]
    if clash and values["split"] is not None:
        raise InputError(f"--split fixes the split; drop {flag_name(clash[0])}")
    if clash and values["data"] is None:  # the synthetic set's split is made by a fixed protocol
        raise InputError(
            f"the embedded synthetic set (no --data) has a fixed split; drop {flag_name(clash[0])}"
        )
    if no_cache:
        values = {**values, "cache_dir": ""}
    return TrainConfig(**values)


def train(resume: str | None, no_cache: bool, **values: Any) -> None:
    """Train an RF-MML embedding (RET on majority classes, then ACF on all classes; by default
    RF-MML+, with the calibrated Proto head; --method rfmml: the paper's), or a baseline (--method),
    and evaluate the Proto and SVM heads (and the linear layer of cross-entropy baselines) on the
    test split. Writes RUN/config.json, split.json, metrics.jsonl, last.pt, best.pt and eval.json."""
    from rfmml.trainer.run import run_training

    if resume is not None:
        run_training(resumed_config(click.get_current_context(), resume, no_cache), resume=True)
    else:
        run_training(new_config(values, no_cache))


command = SectionedCommand(
    PROG,
    callback=train,
    params=_options(),
    help=train.__doc__,
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def main(argv: list[str] | None = None) -> int:
    """Run ``rfmml-train`` on ``argv``; return the exit code (0 ok, 2 bad input, ...) instead of exiting."""
    return run_command(command, argv, PROG)


cli = entry_point(command, PROG)
