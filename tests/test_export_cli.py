"""rfmml-export's command line: bad values refused while parsing (one line, exit 2, nothing loaded or
written), and neither --help nor a refused flag loads torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rfmml.export.cli import main
from rfmml.export.options import MAX_OPSET, MIN_OPSET


def _error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("rfmml-export: error: "), err
    return err[0]


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--svm-c", "nan"], "--svm-c"),
        (["--svm-c", "inf"], "--svm-c"),
        (["--svm-c", "0"], "--svm-c"),
        (["--svm-c", "-1"], "--svm-c"),
        (["--svm-c", "1", "--svm-c", "-inf"], "--svm-c"),
        (["--opset", "99"], f"{MIN_OPSET}<=x<={MAX_OPSET}"),
        (["--opset", "17"], f"{MIN_OPSET}<=x<={MAX_OPSET}"),
        (["--tolerance", "nan"], "--tolerance"),
        (["--tolerance", "-1e-4"], "--tolerance"),
        (["--min-agreement", "nan"], "--min-agreement"),
        (["--min-agreement", "1.5"], "--min-agreement"),
        (["--parity-images", "0"], "--parity-images"),
        (["--batch-size", "100000000"], "--batch-size"),
        (["--checkpoint", ""], "--checkpoint"),
        (["--svm-class-weight", "auto"], "--svm-class-weight"),
    ],
)
def test_bad_values_refused_while_parsing(flags, names, tmp_path, capsys) -> None:
    out = tmp_path / "out" / "m.onnx"
    # the run folder does not even exist: a parse error comes first, before any file is looked at
    assert main(["--run", str(tmp_path / "no-run"), str(out), *flags]) == 2
    assert names in _error_line(capsys)
    assert not out.parent.exists()


def _fake_run(tmp_path: Path, config: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(config)
    (run / "split.json").write_text("{}")
    (run / "best.pt").write_bytes(b"not read")
    return run


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (json.dumps({"seed": 0, "image_size": 32}), "names no backbone"),
        (json.dumps({"backbone": ""}), "names no backbone"),
        (json.dumps({"backbone": 7}), "names no backbone"),
        ("{not json", "not a readable config.json"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_config_without_backbone_is_one_line_naming_the_file(config, expected, tmp_path, capsys) -> None:
    run = _fake_run(tmp_path, config)
    assert main(["--run", str(run), str(tmp_path / "m.onnx")]) == 2
    line = _error_line(capsys)
    assert str(run / "config.json") in line and expected in line, line
    assert not (tmp_path / "m.onnx").exists()


def test_outputs_checked_before_any_work(tmp_path, capsys) -> None:
    run = _fake_run(tmp_path, json.dumps({"backbone": "conv4"}))
    plain = tmp_path / "plain-file"
    plain.write_text("x")
    assert main(["--run", str(run), str(plain / "m.onnx")]) == 2
    assert "not a folder" in _error_line(capsys)
    (tmp_path / "m.npz").mkdir()  # a folder where the head would go: even --force replaces files only
    assert main(["--run", str(run), str(tmp_path / "m.onnx"), "--force"]) == 2
    assert "m.npz exists and is not a file" in _error_line(capsys)
    (tmp_path / "n.int8.onnx").write_bytes(b"old")
    assert main(["--run", str(run), str(tmp_path / "n.onnx"), "--int8"]) == 2
    assert "n.int8.onnx exists; pass --force" in _error_line(capsys)
    assert (tmp_path / "n.int8.onnx").read_bytes() == b"old" and not (tmp_path / "n.onnx").exists()
    assert main(["--run", str(run), str(tmp_path / "m.txt")]) == 2
    assert "must end in .onnx" in _error_line(capsys)


_PROBE = """
import json, sys
from rfmml.export.cli import main
codes = [main(["--help"]), main(["--run", sys.argv[1], "m.onnx", "--opset", "99"]),
         main(["--run", sys.argv[1], "m.onnx", "--svm-c", "nan"]), main(["--run", sys.argv[1], "m.onnx"])]
heavy = sorted(m for m in ("torch", "onnx", "onnxruntime", "sklearn") if m in sys.modules)
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_help_and_refused_flags_do_not_load_torch(tmp_path) -> None:
    """A fresh interpreter: --help, bad flags and a missing run folder answer without torch."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / "missing-run")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["codes"] == [0, 2, 2, 2], done.stderr
    assert result["heavy"] == [], result


def test_opset_range_is_the_exporters() -> None:
    constants = pytest.importorskip("torch.onnx._constants")
    assert constants.ONNX_MAX_OPSET == MAX_OPSET  # update options.MAX_OPSET with the pinned torch


def test_int8_weights_are_7_or_8_bits(tmp_path, capsys):
    """--int8-weights picks the int8 weight width (8: GPTQ-rounded, for VNNI / ARM CPUs); anything
    else is one line naming the flag, exit 2."""
    args = ["--int8-weights", "6", "--run", str(tmp_path), str(tmp_path / "m.onnx"), "--int8"]
    assert main(args) == 2
    assert "--int8-weights" in _error_line(capsys)
