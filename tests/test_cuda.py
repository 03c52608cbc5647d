"""The CUDA path (issue 14), run where a GPU is: ``pytest -m cuda tests/test_cuda.py`` (or
benchmarks/gpu_check.sh). Skipped without CUDA (tests/conftest.py). Only torchvision backbones and
the embedded synthetic set: no timm, no downloads, no data set.

- a few resnet18 episodes in bf16 autocast with channels_last, fp32 loss;
- one epoch of a cross-entropy method;
- resume on CUDA with --deterministic equal, bit for bit, to the uninterrupted run;
- export of a GPU-trained run: the runtime's accuracy (CPU provider) equals eval.json's;
- ``Classifier.load(providers="cuda")`` really runs on CUDA and agrees with the CPU session;
- the episodic loop benchmark at 224 px.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from export_checks import assert_runtime_matches_eval_json, run_test_part

from rfmml.trainer.cli import main as train

pytestmark = pytest.mark.cuda
# --deterministic sets it before CUDA starts; in this process CUDA starts in the first test, so set it
# now (collection), as a user's environment would
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--device", "cuda", "--backbone", "resnet18", "--no-pretrained", "--image-size", "64"]
RUN += ["--ret-episodes", "8", "--acf-episodes", "4", "--val-every", "4", "--log-every", "1"]
RUN += ["--no-progress", "--no-cache", "--svm-c", "1"]


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cuda") / "run"
    assert train([*RUN, "--deterministic", "--out", str(out)]) == 0
    return out


def test_resnet18_episodes_bf16_channels_last() -> None:
    from rfmml.trainer.episode import episode_loss
    from rfmml.trainer.models import build_embedding_net

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_embedding_net("resnet18", pretrained=False).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    k, n, q = 5, 5, 15
    images = torch.randint(0, 256, (k * (n + q), 64, 64, 3), dtype=torch.uint8, device=device)
    labels = torch.arange(k, device=device).repeat_interleave(q)
    losses = []
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            emb = model(images)
        assert emb.dtype == torch.bfloat16
        loss, _ = episode_loss(emb, k, n, labels, "euclidean")
        assert loss.dtype == torch.float32
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert all(np.isfinite(losses))
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_a_training_run_on_cuda(gpu_run: Path) -> None:
    episodes = [r for r in _metrics(gpu_run) if r["kind"] == "episode"]
    assert len(episodes) == 12 and all(np.isfinite(r["loss"]) for r in episodes)
    result = json.loads((gpu_run / "eval.json").read_text())
    assert 0.0 <= result["proto"]["overall"] <= 1.0


def test_one_cross_entropy_epoch_on_cuda(tmp_path: Path) -> None:
    out = tmp_path / "ce"
    args = ["--method", "reweight", "--epochs", "1", "--ce-batch", "32"]
    assert train([*RUN, *args, "--out", str(out)]) == 0
    (epoch,) = [r for r in _metrics(out) if r["kind"] == "epoch"]
    assert np.isfinite(epoch["loss"]) and epoch["episode"] == 1


def test_resume_on_cuda_is_bit_exact_with_deterministic(gpu_run: Path, tmp_path: Path, monkeypatch) -> None:
    from rfmml.trainer import engine

    original = engine.Engine.validate_and_save
    calls = {"n": 0}

    def stop_after_first(self, *args, **kwargs):
        original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    monkeypatch.setattr(engine.Engine, "validate_and_save", stop_after_first)
    assert train([*RUN, "--deterministic", "--out", str(out)]) == 130
    monkeypatch.setattr(engine.Engine, "validate_and_save", original)
    assert train(["--resume", str(out), "--no-progress"]) == 0
    assert _metrics(out) == _metrics(gpu_run)
    assert json.loads((out / "eval.json").read_text()) == json.loads((gpu_run / "eval.json").read_text())


@pytest.fixture(scope="module")
def exported(gpu_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rfmml.export.cli import main as export

    out = tmp_path_factory.mktemp("exported") / "model.onnx"
    assert export(["--run", str(gpu_run), str(out), "--no-progress"]) == 0
    return out


def test_export_of_a_gpu_run_matches_eval_json(gpu_run: Path, exported: Path) -> None:
    assert_runtime_matches_eval_json(gpu_run, exported, providers="cpu")


def test_classifier_on_the_cuda_provider(gpu_run: Path, exported: Path) -> None:
    import onnxruntime as ort

    from rfmml.runtime.classifier import Classifier

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"this onnxruntime has no CUDA provider ({ort.get_available_providers()})")
    gpu = Classifier.load(exported, providers="cuda")
    assert gpu.providers[0] == "CUDAExecutionProvider"
    cpu = Classifier.load(exported, providers="cpu")
    images, _ = run_test_part(gpu_run)
    on_gpu, on_cpu = gpu.embed(images[:64]), cpu.embed(images[:64])
    scale = float(np.abs(on_cpu).max())
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-3 * scale, rtol=0)  # TF32 off: fp32 agreement
    assert np.mean(gpu.predict(images)[0] == cpu.predict(images)[0]) >= 0.99


def test_episodic_loop_benchmark_at_224(tmp_path: Path) -> None:
    out = tmp_path / "loop.json"
    command = [sys.executable, str(ROOT / "benchmarks/episodic_loop.py"), "--backbone", "resnet18"]
    command += ["--image-size", "224", "--device", "cuda", "--per-class", "40", "--episodes", "5"]
    command += ["--assembly-episodes", "20", "--warmup", "2", "--rounds", "1", "--json", str(out)]
    subprocess.run(command, check=True, timeout=300, capture_output=True)
    results = json.loads(out.read_text())
    assert torch.cuda.get_device_name() in results["machine"]
    assert (
        results["train_ours"]["episodes_per_s"] > 0 and results["train_straightforward"]["episodes_per_s"] > 0
    )
