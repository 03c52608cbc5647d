"""Config once: every training setting is declared in TrainConfig, the flags are generated from it, and
a flag, a config.json and a config built in Python are held to the same checks (issues 8 and 9)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rfmml.runtime.errors import InputError
from rfmml.trainer.cli import command, main, new_config, resumed_config
from rfmml.trainer.config import SETTINGS, TrainConfig, read_config, validate
from rfmml.trainer.config_defaults import PAPER_DEFAULTS, resolve_defaults
from rfmml.trainer.config_fields import SECTIONS, FiniteFloat, spec_of


@pytest.mark.parametrize(
    "flags,names",
    [
        (["--seed", "-1"], "--seed"),
        (["--seed", "12345678901234567890"], "--seed"),  # 20 digits: numpy takes < 2**32
        (["--seed", "1.5"], "--seed"),
        (["--ret-lr", "-1"], "--ret-lr"),
        (["--ret-lr", "nan"], "--ret-lr"),
        (["--ret-lr", "0"], "--ret-lr"),
        (["--acf-lr", "inf"], "--acf-lr"),
        (["--la-tau", "nan"], "--la-tau"),
        (["--la-tau", "-inf"], "--la-tau"),
        (["--image-size", "100000"], "--image-size"),
        (["--image-size", "4"], "--image-size"),
        (["--lr", "nan"], "--lr"),
        (["--svm-c", "nan"], "--svm-c"),
        (["--svm-c", "1", "--svm-c", "-1"], "--svm-c"),
        (["--train-frac", "1"], "--train-frac"),
        (["--train-frac", "nan"], "--train-frac"),
        (["--queries", "0"], "--queries"),
        (["--batch-size", "0"], "--batch-size"),
        (["--ce-batch", "100000000"], "--ce-batch"),
        (["--ret-episodes", "-5"], "--ret-episodes"),
        (["--val-every", "0"], "--val-every"),
        (["--n-max", "1"], "--n-max"),
        (["--minority-threshold", "0"], "--minority-threshold"),
        (["--threads", "-1"], "--threads"),
        (["--workers", "100000"], "--workers"),
        (["--method", "nope"], "--method"),
        (["--distance", "l1"], "--distance"),
        (["--backbone", "vgg"], "--backbone"),
        (["--backbone", ""], "--backbone"),
        (["--out", ""], "--out"),  # "" is the working folder: never a run folder by accident
        (["--data", ""], "--data"),
        (["--split", ""], "--split"),
        (["--resume", ""], "--resume"),
    ],
)
def test_bad_values_fail_at_parse_time(tmp_path: Path, capsys, flags: list[str], names: str) -> None:
    out = tmp_path / "r"
    code = main(["--out", str(out), *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("rfmml-train: error: ") and names in err, err
    assert "Traceback" not in err
    assert not out.exists()  # refused before anything was made


def test_every_field_is_a_declared_setting_with_a_flag() -> None:
    flags = {param.name for param in command.params}
    for name, item in SETTINGS.items():
        spec = spec_of(item)
        assert spec.help and spec.section in SECTIONS, name
        assert name in flags, name
    assert flags - set(SETTINGS) == {"resume", "no_cache"}


def test_defaults_equal_the_dataclass_and_flags_reach_the_config() -> None:
    parsed = command.make_context("rfmml-train", ["--out", "x"]).params
    assert new_config({k: v for k, v in parsed.items() if k in SETTINGS}, False) == TrainConfig(out="x")
    argv = ["--out", "x", "--data", "d", "--seed", "7", "--svm-c", "2", "--svm-c", "0.5", "--minority", "A"]
    argv += [
        "--no-augment",
        "--ret-lr",
        "1e-4",
        "--backbone",
        "resnet18",
        "--no-pretrained",
        "--image-size",
        "64",
    ]
    parsed = command.make_context("rfmml-train", argv).params
    config = new_config({k: v for k, v in parsed.items() if k in SETTINGS}, no_cache=True)
    assert config == TrainConfig(
        out="x",
        data="d",
        seed=7,
        svm_c=(2.0, 0.5),
        minority=("A",),
        augment=False,
        ret_lr=1e-4,
        backbone="resnet18",
        pretrained=False,
        image_size=64,
        cache_dir="",
    )


def test_help_shows_the_resolved_defaults_from_the_tables(capsys) -> None:
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # undo the wrapping
    assert "paper: 80000; synthetic: 500" in out and "paper: 5e-6; synthetic: 0.001" in out
    assert "[default: 0.5; 0<x<1]" in out and "8<=x<=4096" in out
    for title in ("Run:", "Model:", "Test heads:", "Plumbing (these may change on --resume):"):
        assert title in out


def test_from_dict_round_trip_of_a_resolved_config() -> None:
    config, _ = resolve_defaults(TrainConfig(out="r", seed=3, svm_c=(1.0,), minority=("A", "B")))
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and isinstance(again.svm_c, tuple)
    ints = {**config.to_dict(), "ret_lr": 1}  # a float field given as an integer stays a float
    assert TrainConfig.from_dict(ints).ret_lr == 1.0 and isinstance(TrainConfig.from_dict(ints).ret_lr, float)


def _run_folder(tmp_path: Path, **changes) -> Path:
    tmp_path.mkdir(exist_ok=True)
    config, _ = resolve_defaults(TrainConfig(out=str(tmp_path)))
    values = {**config.to_dict(), **changes}
    (tmp_path / "config.json").write_text(json.dumps(values))
    return tmp_path


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"seed": 1.5}, "seed: expected an integer, got 1.5"),
        ({"seed": "3"}, "seed: expected an integer"),
        ({"seed": True}, "seed: expected an integer"),
        ({"seed": 2**40}, "seed: 1099511627776 is not in the range"),
        ({"ret_lr": float("nan")}, "ret_lr: nan is not a finite number"),
        ({"svm_c": [1.0, "x"]}, "svm_c: expected a number"),
        ({"svm_c": 1.0}, "svm_c: expected a list"),
        ({"svm_c": []}, "--svm-c needs at least one value"),
        ({"augment": "yes"}, "augment: expected true or false"),
        ({"method": "nope"}, "method: "),
        ({"backbone": None}, "backbone: missing"),
        ({"color": "red"}, "unknown config keys ['color']"),
        ({"train_per_class": 3}, "give --train-frac or --train-per-class, not both"),
    ],
)
def test_read_config_checks_every_value(tmp_path: Path, changes: dict, message: str) -> None:
    run = _run_folder(tmp_path, **changes)
    with pytest.raises(InputError) as caught:
        read_config(run)
    text = str(caught.value)
    assert text.startswith(f"{run / 'config.json'}: ") and message in text and "\n" not in text, text


def test_read_config_of_a_good_run_and_of_no_run(tmp_path: Path) -> None:
    run = _run_folder(tmp_path)
    assert read_config(run) == resolve_defaults(TrainConfig(out=str(tmp_path)))[0]
    with pytest.raises(InputError, match="not a run folder"):
        read_config(tmp_path / "nothing")
    (run / "config.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a JSON object"):
        read_config(run)
    (run / "config.json").write_text('{"out": ')
    with pytest.raises(InputError, match="unreadable config"):
        read_config(run)


def test_resume_with_a_bad_config_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    run = _run_folder(tmp_path / "run", seed=1.5)
    assert main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json: seed: expected an integer" in err, err


def test_resume_takes_only_where_and_how_flags(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "run")
    ctx = command.make_context(
        "rfmml-train", ["--resume", str(run), "--device", "cpu", "--no-cache", "--workers", "2"]
    )
    config = resumed_config(ctx, str(run), no_cache=True)
    assert (config.device, config.cache_dir, config.workers, config.out) == ("cpu", "", 2, str(run))
    assert dataclasses.replace(config, device="auto", cache_dir=None, workers=0) == read_config(run)
    ctx = command.make_context("rfmml-train", ["--resume", str(run), "--seed", "3"])
    with pytest.raises(InputError, match="drop --seed"):
        resumed_config(ctx, str(run), no_cache=False)


def test_validate_holds_python_configs_to_the_flags_rules() -> None:
    with pytest.raises(InputError, match=r"^--seed: -1 is not in the range"):
        validate(TrainConfig(out="x", seed=-1))
    with pytest.raises(InputError, match=r"^--la-tau: nan is not a finite number"):
        validate(TrainConfig(out="x", la_tau=float("nan")))
    with pytest.raises(InputError, match="not both"):
        validate(TrainConfig(out="x", weights="w.pt", init="run"))
    validate(resolve_defaults(TrainConfig(out="x"))[0])  # the defaults pass


def test_finite_float_refuses_nan_and_inf_inside_open_ranges() -> None:
    unbounded = FiniteFloat()
    assert unbounded.convert("2.5", None, None) == 2.5
    for text in ("nan", "inf", "-inf"):
        with pytest.raises(Exception, match="finite"):
            unbounded.convert(text, None, None)


def test_every_paper_default_is_a_setting() -> None:
    assert set(PAPER_DEFAULTS) <= set(SETTINGS)


# --method (issue 11): rfmml-plus by default, for real data and for the embedded synthetic set alike;
# --preset paper is the paper's setting, so the paper's method; a --method given always wins.
@pytest.mark.parametrize("data", [None, "/d"])
def test_the_default_method_is_rfmml_plus(data: str | None) -> None:
    assert TrainConfig(out="r", data=data).method is None  # resolved before training, like the budgets
    config, _ = resolve_defaults(TrainConfig(out="r", data=data))
    assert (config.method, config.proto_head, config.calibrated_proto) == ("rfmml-plus", "calibrated", True)
    if data is not None:  # real data, --tune head: RF-MML+'s short RET and long ACF
        assert (config.tune, config.ret_episodes, config.acf_episodes, config.acf_lr) == (
            "head",
            5000,
            20000,
            1e-5,
        )
    else:  # the synthetic set's shrunken budget, whatever the method
        assert (config.tune, config.ret_episodes, config.acf_episodes, config.acf_lr) == (
            "all",
            500,
            200,
            2e-4,
        )


@pytest.mark.parametrize("data", [None, "/d"])
def test_preset_paper_resolves_to_the_papers_method(data: str | None) -> None:
    config, _ = resolve_defaults(TrainConfig(out="r", data=data, preset="paper"))
    assert (config.method, config.proto_head, config.calibrated_proto) == ("rfmml", "plain", False)
    assert (config.ret_episodes, config.acf_episodes, config.acf_lr) == (80_000, 2_000, 1e-6)


@pytest.mark.parametrize("method", ["rfmml", "rfmml-plus", "protonet", "logit-adjust", "frozen"])
@pytest.mark.parametrize("data,preset", [(None, None), ("/d", None), (None, "paper"), ("/d", "paper")])
def test_a_method_given_always_wins(method: str, data: str | None, preset: str | None) -> None:
    config, _ = resolve_defaults(TrainConfig(out="r", data=data, preset=preset, method=method))
    assert config.method == method
    assert config.calibrated_proto == (method == "rfmml-plus")
    parsed = command.make_context("rfmml-train", ["--out", "r", "--method", method]).params
    assert new_config({k: v for k, v in parsed.items() if k in SETTINGS}, False).method == method


def test_an_old_config_json_of_the_papers_method_loads_and_resumes_as_rfmml(tmp_path: Path) -> None:
    """A run written when rfmml was the default: config.json holds "method": "rfmml" (and, before
    --proto-head, no proto_head key); reading or resuming it keeps the paper's method and head."""
    run = _run_folder(tmp_path / "run", method="rfmml")
    old = json.loads((run / "config.json").read_text())
    del old["proto_head"]
    (run / "config.json").write_text(json.dumps(old))
    config = read_config(run)
    assert (config.method, config.proto_head, config.calibrated_proto) == ("rfmml", None, False)
    ctx = command.make_context("rfmml-train", ["--resume", str(run), "--device", "cpu"])
    assert resumed_config(ctx, str(run), no_cache=False).method == "rfmml"
    ctx = command.make_context("rfmml-train", ["--resume", str(run), "--method", "rfmml-plus"])
    with pytest.raises(InputError, match="drop --method"):  # a resumed run keeps its method
        resumed_config(ctx, str(run), no_cache=False)


@pytest.mark.parametrize("method", [None, "missing"])
def test_a_config_json_without_its_method_is_refused(tmp_path: Path, method: str | None) -> None:
    run = _run_folder(tmp_path, method=method)
    if method == "missing":
        values = json.loads((run / "config.json").read_text())
        del values["method"]
        (run / "config.json").write_text(json.dumps(values))
    with pytest.raises(InputError, match=r"config.json: method: missing \(not a config.json written by"):
        read_config(run)


def test_help_names_the_default_method(capsys) -> None:
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "[default: rfmml-plus; --preset paper: rfmml]" in out
