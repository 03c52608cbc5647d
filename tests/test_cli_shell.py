"""One CLI shell for the six commands (issue 8): the same one-line errors and exit codes everywhere.

Each command is driven in-process through its ``main(argv) -> int``: a missing input, a bad value and
an unwritable output are exit 2 with exactly one ``rfmml-<cmd>: error:`` line; Ctrl-C is 130, a closed
stdout 141, a bug 1 with a pointer to RFMML_DEBUG (which then prints the traceback).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click
import pytest
from runtime_fixtures import colour_pair

from rfmml.runtime.cli_shell import EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USER

COMMANDS = {
    "rfmml-train": "rfmml.trainer.cli",
    "rfmml-export": "rfmml.export.cli",
    "rfmml-infer": "rfmml.runtime.cli",
    "rfmml-compare": "rfmml.trainer.compare",
    "rfmml-demo": "rfmml.export.demo",
    "rfmml-enroll": "rfmml.runtime.enroll_cli",
}


def _command(module_name: str) -> click.Command:
    """The module's click command (whatever its name), so the test survives renames."""
    module = importlib.import_module(module_name)
    found = {id(v): v for v in vars(module).values() if isinstance(v, click.Command)}
    assert len(found) == 1, f"{module_name}: expected one click command, found {len(found)}"
    return next(iter(found.values()))


def _run(prog: str, argv: list[str], capsys) -> tuple[int, list[str]]:
    main = importlib.import_module(COMMANDS[prog]).main
    code = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


def _assert_one_line_error(prog: str, code: int, err: list[str]) -> None:
    assert code == EXIT_USER, (code, err)
    errors = [line for line in err if line.startswith(f"{prog}: error: ")]
    assert len(errors) == 1, err
    assert not any("Traceback" in line for line in err), err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny finished training run (conv4 on the synthetic set, a few episodes)."""
    out = tmp_path_factory.mktemp("shell") / "run"
    from rfmml.trainer.cli import main

    code = main(
        ["--out", str(out), "--ret-episodes", "4", "--acf-episodes", "2", "--val-every", "2", "--no-progress"]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return colour_pair(tmp_path_factory.mktemp("pair"))


@pytest.fixture()
def a_file(tmp_path: Path) -> Path:
    """A plain file: any output path under it cannot be created, even by root."""
    path = tmp_path / "plain-file"
    path.write_text("x")
    return path


def _argv(prog: str, case: str, run_dir: Path, model: Path, a_file: Path, tmp: Path) -> list[str] | None:
    missing = str(tmp / "does-not-exist")
    table = {
        "rfmml-train": {
            "missing": ["--data", missing, "--out", str(tmp / "r")],
            "bad": ["--seed", "-1", "--out", str(tmp / "r")],
            "unwritable": ["--out", str(a_file / "run"), "--ret-episodes", "2", "--acf-episodes", "0"],
        },
        "rfmml-export": {
            "missing": ["--run", missing, str(tmp / "m.onnx")],
            "bad": ["--run", str(run_dir), str(tmp / "m.onnx"), "--svm-c", "nan"],
            "unwritable": ["--run", str(run_dir), str(a_file / "m.onnx")],
        },
        "rfmml-infer": {
            "missing": ["--model", str(model), missing],
            "bad": ["--model", str(model), str(tmp), "--batch", "0"],
            "unwritable": ["--model", str(model), str(_tiles(tmp)), "--out", str(a_file / "p.csv")],
        },
        "rfmml-compare": {
            "missing": [missing, "--out", str(tmp / "report")],
            "bad": [str(run_dir), "--out", str(tmp / "report"), "--group-by", "nonsense"],
            "unwritable": [str(run_dir), "--out", str(a_file / "report")],
        },
        "rfmml-demo": {
            "missing": None,  # the demo reads no input: it makes its own data
            "bad": ["--out", str(tmp / "demo"), "--seed", "-1"],
            "unwritable": ["--out", str(a_file / "demo")],
        },
        "rfmml-enroll": {
            "missing": ["--model", str(model), "--add", "x", missing, "--out", str(tmp / "h.npz")],
            "bad": ["--model", str(model), "--remove", "red", "--threads", "-1", "--out", str(tmp / "h.npz")],
            "unwritable": ["--model", str(model), "--remove", "red", "--out", str(a_file / "h.npz")],
        },
    }
    return table[prog][case]


def _tiles(tmp: Path) -> Path:
    from PIL import Image
    from runtime_fixtures import uniform_tile

    folder = tmp / "tiles"
    folder.mkdir(exist_ok=True)
    Image.fromarray(uniform_tile(0)).save(folder / "a.png")
    return folder


@pytest.mark.parametrize("case", ["missing", "bad", "unwritable"])
@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_user_errors_are_one_line_exit_2(prog, case, run_dir, model, a_file, tmp_path, capsys) -> None:
    argv = _argv(prog, case, run_dir, model, a_file, tmp_path)
    if argv is None:
        pytest.skip(f"{prog} takes no input")
    code, err = _run(prog, argv, capsys)
    _assert_one_line_error(prog, code, err)


def _raise(error: BaseException):
    def callback(*_args, **_kwargs):
        raise error

    return callback


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_interrupt_pipe_and_bug_exit_codes(prog, monkeypatch, capsys) -> None:
    command = _command(COMMANDS[prog])
    argv: list[str] = []  # the command has no parameters left: the callback runs at once
    cases = [
        (KeyboardInterrupt(), EXIT_INTERRUPTED, f"{prog}: interrupted"),
        (BrokenPipeError(), EXIT_BROKEN_PIPE, None),
        (RuntimeError("boom\nsecond line"), EXIT_INTERNAL, f"{prog}: error: internal error: RuntimeError"),
    ]
    for error, expected, first in cases:
        monkeypatch.setattr(command, "callback", _raise(error))
        monkeypatch.setattr(command, "params", [])  # no required option stands in the way
        code, err = _run(prog, argv, capsys)
        assert code == expected, (prog, error, err)
        if first is not None:
            assert len(err) == 1 and err[0].startswith(first), err
        if expected == EXIT_INTERNAL:
            assert "boom; second line" in err[0] and "RFMML_DEBUG=1" in err[0]


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_debug_variable_prints_the_traceback(prog, monkeypatch, capsys) -> None:
    command = _command(COMMANDS[prog])
    monkeypatch.setattr(command, "callback", _raise(RuntimeError("boom")))
    monkeypatch.setattr(command, "params", [])
    monkeypatch.setenv("RFMML_DEBUG", "1")
    code, err = _run(prog, [], capsys)
    assert code == EXIT_INTERNAL
    assert err[0].startswith("Traceback") and err[-1].startswith(f"{prog}: error: internal error")


def test_console_scripts_point_at_the_shell() -> None:
    """Each console script is the shell's entry point for that command (one behaviour for all)."""
    import tomllib

    scripts = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    assert sorted(scripts) == sorted(COMMANDS)
    for prog, target in scripts.items():
        module_name, attr = target.split(":")
        assert module_name == COMMANDS[prog]
        entry = getattr(importlib.import_module(module_name), attr)
        assert entry.__doc__ == f"Console script ``{prog}``.", (prog, entry)
