"""Tuning regimes (issue 10): --tune head/last/all, the feature cache, --method frozen, the defaults
and --preset paper. Tiny synthetic runs (conv4 at 16 px, a few dozen episodes) unless marked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rfmml.trainer.checkpoint import Checkpoint
from rfmml.trainer.cli import main
from rfmml.trainer.config import TrainConfig
from rfmml.trainer.config_defaults import resolve_defaults
from rfmml.trainer.feature_cache import cache_path, cached_features
from rfmml.trainer.models import build_embedding_net
from rfmml.trainer.run_setup import build_model

TINY = ["--image-size", "16", "--ret-episodes", "20", "--acf-episodes", "10", "--val-every", "5"]
TINY += ["--log-every", "1", "--no-progress", "--svm-c", "1"]


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def _eval(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval.json").read_text())


def test_preset_paper_resolves_to_the_papers_numbers() -> None:
    config, _ = resolve_defaults(TrainConfig(out="r", data="/d", preset="paper"))
    assert (config.backbone, config.pretrained, config.image_size, config.tune) == (
        "wide_resnet50_2",
        True,
        224,
        "all",
    )
    assert (config.ret_episodes, config.acf_episodes, config.ret_lr, config.acf_lr) == (
        80_000,
        2_000,
        5e-6,
        1e-6,
    )
    assert config.embed_dim is None  # the paper's embedding: the pooled 2048-d features


def test_preset_paper_in_config_json_flags_given_win(tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = ["--backbone", "conv4", "--ret-episodes", "4", "--acf-episodes", "2", "--val-every", "2"]
    assert main(["--out", str(out), "--preset", "paper", *flags, "--image-size", "16", "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "paper" and config["tune"] == "all" and config["method"] == "rfmml"
    assert (config["ret_lr"], config["acf_lr"], config["val_every"]) == (5e-6, 1e-6, 2)
    assert (config["ret_episodes"], config["backbone"], config["pretrained"]) == (4, "conv4", False)


def test_real_data_defaults_are_offline_pretrained_head() -> None:
    config, shrunk = resolve_defaults(TrainConfig(out="r", data="/d"))
    assert (config.backbone, config.pretrained, config.image_size, config.tune, config.embed_dim) == (
        "efficientnet_lite0",
        True,
        128,
        "head",
        256,
    )
    # the default method, rfmml-plus: its short RET and long ACF; the paper's method: the paper's budget
    assert (config.method, config.ret_episodes, config.acf_episodes) == ("rfmml-plus", 5_000, 20_000)
    assert shrunk == []
    paper_method, _ = resolve_defaults(TrainConfig(out="r", data="/d", method="rfmml"))
    assert (paper_method.ret_episodes, paper_method.acf_episodes, paper_method.tune) == (
        80_000,
        2_000,
        "head",
    )
    scratch, _ = resolve_defaults(TrainConfig(out="r", data="/d", backbone="conv4"))
    assert (scratch.tune, scratch.pretrained, scratch.image_size, scratch.ret_lr) == ("all", False, 224, 5e-6)
    probe, _ = resolve_defaults(TrainConfig(out="r", data="/d", method="logit-adjust"))
    assert probe.tune == "head" and probe.embed_dim is None  # a linear probe on the features


def test_real_data_last_defaults() -> None:
    """--tune last: rfmml-plus gets its CPU-affordable budget (RESULTS.md), other methods the paper's;
    flags given win."""
    plus, _ = resolve_defaults(TrainConfig(out="r", data="/d", tune="last"))
    budget = (plus.method, plus.ret_episodes, plus.acf_episodes, plus.ret_lr, plus.acf_lr, plus.val_every)
    assert budget == ("rfmml-plus", 1_000, 2_000, 1e-4, 1e-4, 250)
    paper, _ = resolve_defaults(TrainConfig(out="r", data="/d", tune="last", method="rfmml"))
    assert (paper.ret_episodes, paper.acf_episodes, paper.ret_lr, paper.acf_lr) == (80_000, 2_000, 5e-6, 1e-6)
    given, _ = resolve_defaults(TrainConfig(out="r", data="/d", tune="last", acf_episodes=500, ret_lr=3e-5))
    assert (given.ret_episodes, given.acf_episodes, given.ret_lr) == (1_000, 500, 3e-5)
    everything, _ = resolve_defaults(TrainConfig(out="r", data="/d", tune="all"))
    assert (everything.ret_episodes, everything.ret_lr) == (80_000, 5e-6)  # not measured: the paper's


def test_synthetic_defaults_unchanged() -> None:
    config, _ = resolve_defaults(TrainConfig(out="r"))
    assert (config.backbone, config.image_size, config.tune, config.embed_dim) == ("conv4", 32, "all", None)
    assert config.augment is True


def test_augment_default_depends_on_the_regime() -> None:
    head, _ = resolve_defaults(TrainConfig(out="r", data="/d"))
    assert head.augment is False  # no gain measured for 8x the feature extraction
    assert resolve_defaults(TrainConfig(out="r", data="/d", tune="last"))[0].augment is True
    assert resolve_defaults(TrainConfig(out="r", data="/d", augment=True))[0].augment is True


def test_frozen_refuses_another_tune(capsys) -> None:
    assert main(["--out", "never", "--method", "frozen", "--tune", "all", "--no-progress"]) == 2
    assert "--method frozen trains nothing" in capsys.readouterr().err


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_embedding_net("conv4")


def test_feature_cache_hit_and_invalidation(tmp_path: Path) -> None:
    net = _net()
    images = torch.randint(0, 256, (6, 16, 16, 3), dtype=torch.uint8)
    cpu = torch.device("cpu")
    first, hit = cached_features(net, images, 8, tmp_path, 4, cpu)
    assert not hit and first.shape == (6, 8, 64)
    again, hit = cached_features(net, images, 8, tmp_path, 4, cpu)
    assert hit and torch.equal(again, first)
    # view 0 is the image as it is; view 4 its left-right flip (augment.py's numbering)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(first[:, 0], net.features(images), rtol=0, atol=1e-5)
        torch.testing.assert_close(first[:, 4], net.features(images.flip(2)), rtol=0, atol=1e-5)
    path = cache_path(tmp_path, net, images, 8)
    changed = images.clone()
    changed[0, 0, 0, 0] ^= 1  # one pixel of one image
    assert cache_path(tmp_path, net, changed, 8) != path
    _, hit = cached_features(net, changed, 8, tmp_path, 4, cpu)
    assert not hit
    with torch.no_grad():
        net.backbone[0][0].weight[0, 0, 0, 0] += 1e-3  # other weights
    assert cache_path(tmp_path, net, images, 8) != path
    features, hit = cached_features(net, images, 8, tmp_path, 4, cpu)
    assert not hit and not torch.equal(features, first)
    assert cache_path(tmp_path, net, images, 1) != path  # views are part of the key


def test_damaged_cache_file_is_recomputed(tmp_path: Path) -> None:
    net, images = _net(), torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    first, _ = cached_features(net, images, 1, tmp_path, 4, torch.device("cpu"))
    cache_path(tmp_path, net, images, 1).write_bytes(b"not an npy file")
    with pytest.warns(UserWarning, match="ignoring unreadable feature cache"):
        again, hit = cached_features(net, images, 1, tmp_path, 4, torch.device("cpu"))
    assert not hit and torch.equal(again, first)


def _initial_backbone(out: Path) -> dict[str, torch.Tensor]:
    """The tensors the run started from (the same seed, the same build order)."""
    config = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    torch.manual_seed(config.seed)
    return {k: v.clone() for k, v in build_model(config).state_dict().items()}


@pytest.mark.parametrize("tune", ["head", "last"])
def test_frozen_parameters_stay_bit_identical(tmp_path: Path, tune: str) -> None:
    out = tmp_path / "run"
    assert main([*TINY, "--out", str(out), "--tune", tune, "--no-cache"]) == 0
    initial = _initial_backbone(out)
    trained = Checkpoint.load(out / "last.pt").model
    frozen_prefixes = ("backbone.",) if tune == "head" else ("backbone.0.", "backbone.1.", "backbone.2.")
    frozen = [k for k in initial if k.startswith(frozen_prefixes)]
    assert frozen and all(torch.equal(trained[k], initial[k]) for k in frozen)  # BatchNorm stats included
    assert set(trained) == set(initial)
    moved = [k for k in trained if not torch.equal(trained[k], initial[k])]
    expected = ("head.",) if tune == "head" else ("backbone.3.",)
    assert moved and all(k.startswith(expected) for k in moved)


def test_last_regime_trains_only_the_last_stage_of_efficientnet() -> None:
    config, _ = resolve_defaults(TrainConfig(out="r", data="/d", tune="last", pretrained=False))
    net = build_model(config)
    trainable = {k.split(".")[1] for k, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"blocks", "conv_head", "bn2"}
    assert {k for k, p in net.named_parameters() if p.requires_grad and ".blocks." in f".{k}"} == {
        k for k, _ in net.named_parameters() if k.startswith("backbone.blocks.6.")
    }
    net.train()
    assert not net.backbone.bn1.training and net.backbone.bn2.training


def test_head_regime_resume_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rfmml.trainer import engine

    flags = [*TINY, "--tune", "head", "--augment", "--cache-dir", str(tmp_path / "cache")]  # 8 views
    full = tmp_path / "full"
    assert main([*flags, "--out", str(full)]) == 0
    original, calls = engine.Engine.validate_and_save, {"n": 0}

    def interrupting(*args, **kwargs):
        original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # in RET, after episode 15
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with monkeypatch.context() as patch:
        patch.setattr(engine.Engine, "validate_and_save", interrupting)
        assert main([*flags, "--out", str(cut)]) == 130
    assert main(["--resume", str(cut), "--no-progress"]) == 0
    assert _metrics(cut) == _metrics(full)
    assert _eval(cut) == _eval(full)


@pytest.mark.parametrize("method", ["protonet", "logit-adjust", "frozen"])
def test_every_family_runs_on_cached_features(tmp_path: Path, method: str) -> None:
    out = tmp_path / "run"
    budget = ["--epochs", "2"] if method == "logit-adjust" else []
    tune = [] if method == "frozen" else ["--tune", "head"]
    assert main([*TINY, *budget, *tune, "--method", method, "--out", str(out), "--no-cache"]) == 0
    result = _eval(out)
    assert result["method"] == method and 0.0 <= result["proto"]["overall"] <= 1.0
    if method == "frozen":
        assert _metrics(out) == [] and Checkpoint.load(out / "best.pt").phase == "none"
    if method == "logit-adjust":
        assert "linear" in result


@pytest.mark.slow
def test_frozen_pretrained_on_real_eurosat(tmp_path: Path, eurosat_root: Path) -> None:
    """--method frozen with the default backbone (efficientnet_lite0, packaged ImageNet weights):
    no training, and far above chance (10 %) on a small imbalanced EuroSAT split."""
    out = tmp_path / "run"
    subset = ["--train-per-class", "20", "--val-per-class", "5", "--test-per-class", "20"]
    subset += ["--minority-classes", "4", "--minority-shots", "5", "--image-size", "64", "--svm-c", "1"]
    flags = ["--data", str(eurosat_root), "--method", "frozen", *subset, "--no-progress", "--no-cache"]
    assert main([*flags, "--out", str(out)]) == 0
    config, result = json.loads((out / "config.json").read_text()), _eval(out)
    assert (config["backbone"], config["pretrained"], config["tune"]) == ("efficientnet_lite0", True, "head")
    assert _metrics(out) == []
    assert result["proto"]["overall"] >= 0.6 and result["svm"]["overall"] >= 0.6, result
    assert result["proto"]["minority"] >= 0.3, result
