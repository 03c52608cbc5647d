"""Issue 14 on the CPU: the CUDA path's defects that a CPU can check (resume across device types, the
device-neutral suite, loss constants moved once, cuDNN benchmark choice, fp32 evaluation, the
--deterministic wiring, onnxruntime's stdout, provider order/options and int8 on the CPU, the
out-of-memory line). The GPU side is tests/test_cuda.py and benchmarks/gpu_check.sh."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from rfmml.runtime import session as session_module
from rfmml.trainer import ce_train, device, episodic
from rfmml.trainer.ce_train import ce_loss_fn
from rfmml.trainer.checkpoint import Checkpoint, CheckpointError
from rfmml.trainer.cli import main
from rfmml.trainer.engine import Engine
from rfmml.trainer.heads import embed
from rfmml.trainer.method_interface import Phase

TINY = ["--image-size", "16", "--ret-episodes", "6", "--acf-episodes", "4", "--val-every", "3"]
TINY += ["--log-every", "1", "--no-progress", "--svm-c", "1", "--no-cache"]


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "run"
    os.environ["RFMML_AUTO_DEVICE"] = "cpu"  # module fixture: before the autouse one
    assert main([*TINY, "--out", str(out)]) == 0
    return out


# 1. resume across device types ------------------------------------------------------------------------
def _as_if_from_cuda(run_dir: Path, target: Path) -> None:
    """A copy of ``run_dir`` whose last.pt says: written on CUDA at ret episode 3 (16-byte state)."""
    target.mkdir(parents=True)
    for name in ("split.json", "config.json", "metrics.jsonl", "best.pt"):
        (target / name).write_bytes((run_dir / name).read_bytes())
    config = json.loads((run_dir / "config.json").read_text())
    config["out"] = str(target)
    (target / "config.json").write_text(json.dumps(config))
    state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    cuda_gen = torch.arange(16, dtype=torch.uint8)  # a CUDA generator's state: seed + offset
    state.update(phase="ret", phase_index=0, step=3, rng_device="cuda")
    state["rng"] = {"shape_gen": state["rng"]["shape_gen"], "gen": cuda_gen}
    torch.save(state, target / "last.pt")


def test_resume_of_a_cuda_checkpoint_on_cpu_reseeds_and_says_so(tiny_run, tmp_path, capsys) -> None:
    runs = []
    for name in ("a", "b"):
        _as_if_from_cuda(tiny_run, tmp_path / name)
        capsys.readouterr()
        assert main(["--resume", str(tmp_path / name), "--no-progress"]) == 0
        err = capsys.readouterr().err
        notes = [line for line in err.splitlines() if "was written on cuda, resuming on cpu" in line]
        assert len(notes) == 1 and "re-seeded from (seed, phase, step)" in notes[0]
        runs.append(_metrics(tmp_path / name))
    assert runs[0] == runs[1]  # the re-seed is a fixed function of (seed, phase, step)
    episodes = [r for r in runs[0] if r["kind"] == "episode"]
    assert [(r["phase"], r["episode"]) for r in episodes][-7:] == [("ret", 4), ("ret", 5), ("ret", 6)] + [
        ("acf", e) for e in range(1, 5)
    ]
    assert Checkpoint.load(tmp_path / "a" / "last.pt").rng_device == "cpu"


def test_resume_on_another_device_without_reseed_is_one_line(tmp_path) -> None:
    warned: list[str] = []
    fake = SimpleNamespace(
        device=torch.device("cpu"), run_dir=tmp_path, warn=warned.append, method=SimpleNamespace()
    )
    checkpoint = SimpleNamespace(rng_device="cuda", rng={}, phase_index=0, step=1)
    with pytest.raises(CheckpointError, match="written on cuda.*resume with --device cuda"):
        Engine.load_rng(fake, checkpoint)
    assert not warned


def test_old_checkpoints_without_the_device_read_as_cpu(tiny_run) -> None:
    state = torch.load(tiny_run / "last.pt", map_location="cpu", weights_only=True)
    assert state["rng_device"] == "cpu"
    del state["rng_device"]
    assert Checkpoint.from_state(state).rng_device == "cpu"


# 2. the device-neutral suite --------------------------------------------------------------------------
def test_auto_means_cpu_in_the_default_suite(monkeypatch) -> None:
    assert os.environ["RFMML_AUTO_DEVICE"] == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(session_module, "cuda_device_count", lambda: 1)
    available = list(session_module.PROVIDER_RANK)
    monkeypatch.setattr(session_module.ort, "get_available_providers", lambda: available)
    assert session_module.auto_providers("x.onnx") == ["CPUExecutionProvider"]
    monkeypatch.delenv("RFMML_AUTO_DEVICE")  # the product's own "auto" would take the GPU
    assert device.resolve_device("auto") == torch.device("cuda")
    assert session_module.auto_providers("x.onnx")[0] == "CUDAExecutionProvider"


# 3. class weights / log-priors on the device once ----------------------------------------------------
@pytest.mark.parametrize(("method", "key"), [("reweight", "weight"), ("logit-adjust", "log_pi")])
def test_loss_constants_live_on_the_device_and_are_not_copied(method, key, monkeypatch) -> None:
    counts = torch.tensor([30, 10, 5])
    assert ce_loss_fn(method, counts, 1.0, "meta").keywords[key].device.type == "meta"
    loss_fn = ce_loss_fn(method, counts, 1.0, "cpu")
    constant = loss_fn.keywords[key]
    copies: list[tuple] = []
    original = torch.Tensor.to

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self is constant and out is not self:
            copies.append(args)
        return out

    monkeypatch.setattr(torch.Tensor, "to", spy)
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    first = loss_fn(logits, torch.tensor([0, 1, 2, 0]))
    second = loss_fn(logits, torch.tensor([0, 1, 2, 0]))
    assert copies == [] and loss_fn.keywords[key] is constant
    assert float(first) == float(second) and float(first) > 0


# 4. cuDNN benchmark -----------------------------------------------------------------------------------
def test_cudnn_benchmark_only_for_fixed_batch_shapes() -> None:
    def method(*units: str) -> SimpleNamespace:
        return SimpleNamespace(phases=[Phase("p", 1, unit, 0.1, "--lr", 1, 1) for unit in units])

    assert device.cudnn_benchmark(method("epoch"), deterministic=False) is True
    assert device.cudnn_benchmark(method("episode", "episode"), deterministic=False) is False
    assert device.cudnn_benchmark(method("epoch"), deterministic=True) is False


# 5. fp32 evaluation -----------------------------------------------------------------------------------
class _Spy(torch.nn.Module):
    """Records whether autocast was on; float32 [B, 2] of uint8 [B, H, W, 3] (a matmul: autocast
    would run it in bf16)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.autocast: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.autocast.append(torch.is_autocast_enabled("cpu"))
        return self.linear(x.float().mean(dim=(1, 2)) / 255.0 + 1e-3)


def test_embed_runs_in_float32_even_inside_autocast() -> None:
    torch.manual_seed(0)
    model = _Spy()
    images = torch.randint(
        0, 256, (5, 4, 4, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    plain = embed(model, images, batch_size=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = embed(model, images, batch_size=2)
        assert model.linear(torch.ones(1, 3)).dtype == torch.bfloat16  # the region does cast
    assert model.autocast == [False] * 6
    assert inside.dtype == torch.float32 and torch.equal(inside, plain)


# 6. --deterministic -----------------------------------------------------------------------------------
def test_deterministic_sets_torch_and_cublas_and_is_restored(tiny_run, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seen = {}
    original = episodic.EpisodicMethod.step

    def step(self, *args):
        seen["flag"] = torch.are_deterministic_algorithms_enabled()
        return original(self, *args)

    monkeypatch.setattr(episodic.EpisodicMethod, "step", step)
    assert main([*TINY, "--deterministic", "--out", str(tmp_path / "det")]) == 0
    assert seen["flag"] is True and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.are_deterministic_algorithms_enabled() is False  # restored after the run
    assert _metrics(tmp_path / "det") == _metrics(tiny_run)  # the CPU was deterministic already


# 7. onnxruntime ---------------------------------------------------------------------------------------
def test_preload_messages_go_to_stderr(monkeypatch, capsys) -> None:
    monkeypatch.setattr(session_module.ort, "preload_dlls", lambda: print("Failed to load libcudnn.so.9"))
    session_module._preload_cuda()
    out, err = capsys.readouterr()
    assert out == "" and "libcudnn" in err


def test_provider_order_and_cuda_options(monkeypatch) -> None:
    monkeypatch.setattr(
        session_module.ort, "get_available_providers", lambda: list(session_module.PROVIDER_RANK)
    )
    options = {"cudnn_conv_algo_search": "HEURISTIC", "use_tf32": "0"}
    assert session_module.with_options(["CPUExecutionProvider", "CUDAExecutionProvider"]) == [
        ("CUDAExecutionProvider", options),
        "CPUExecutionProvider",
    ]
    assert session_module.with_options(["TensorrtExecutionProvider", "CPUExecutionProvider"]) == [
        "TensorrtExecutionProvider",
        ("CUDAExecutionProvider", options),
        "CPUExecutionProvider",
    ]


def _tiny_model(path: Path, int8: bool) -> Path:
    """x float [1, 4] -> y: Relu, or a QDQ pair around it (what static int8 quantisation writes)."""
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1])
    zero = helper.make_tensor("zero", TensorProto.INT8, [], [0])
    nodes = [helper.make_node("Relu", ["x"], ["r"])]
    if int8:
        nodes += [
            helper.make_node("QuantizeLinear", ["r", "scale", "zero"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"]),
        ]
    else:
        nodes += [helper.make_node("Identity", ["r"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [scale, zero],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return path


def test_auto_keeps_int8_models_on_the_cpu(tmp_path, monkeypatch) -> None:
    fp32, int8 = _tiny_model(tmp_path / "m.onnx", False), _tiny_model(tmp_path / "m.int8.onnx", True)
    assert not session_module.is_quantized(fp32) and session_module.is_quantized(int8)
    assert not session_module.is_quantized(tmp_path / "missing.onnx")
    monkeypatch.delenv("RFMML_AUTO_DEVICE")
    monkeypatch.setattr(session_module, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(
        session_module.ort, "get_available_providers", lambda: list(session_module.PROVIDER_RANK)
    )
    assert session_module.auto_providers(fp32) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert session_module.auto_providers(int8) == ["CPUExecutionProvider"]
    import onnxruntime as ort

    y = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.array([[-1, 0.25, 1, 2]], np.float32)}
    )[0]
    assert np.allclose(y, [[0, 0.2, 1, 2]])  # the QDQ model is a real, runnable int8 graph


# 8. out of memory -------------------------------------------------------------------------------------
def _oom(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.parametrize(
    ("target", "args", "expected"),
    [
        (
            (episodic, "episode_loss"),
            [],
            r"out of memory at ret episode 1 \(episode of \d+ images: K=\d+ classes x N=\d+ shots \+ \d+ "
            r"queries; lower --queries \(now \d+\) or --n-max \(now \d+\)\)",
        ),
        ((episodic, "embed"), [], r"out of memory validating after ret episode 3 \(embedding batch \d+ "),
        (
            (ce_train.CrossEntropyMethod, "_epoch"),
            ["--method", "plain", "--epochs", "1"],
            r"lower --ce-batch",
        ),
    ],
)
def test_out_of_memory_is_one_line_and_exit_2(target, args, expected, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(*target, _oom)
    assert main([*TINY, *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "out of memory" in line]
    assert len(lines) == 1 and lines[0].startswith("rfmml-train: error: cpu out of memory")
    assert re.search(expected, lines[0]), lines[0]


# the GPU script -----------------------------------------------------------------------------------------
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def _script(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_gpu_check_fails_clearly_without_cuda(tmp_path) -> None:
    started = time.perf_counter()
    done = _script(tmp_path=tmp_path)
    assert done.returncode == 1 and time.perf_counter() - started < 30
    assert done.stderr.strip().splitlines() == [
        "gpu_check: no CUDA device: torch.cuda.is_available() is False (run this on a GPU machine)"
    ]
    assert done.stdout == "" and not any(tmp_path.iterdir())  # nothing installed, nothing pretended


def test_gpu_check_dry_run_prints_the_plan(tmp_path) -> None:
    done = _script("--dry-run", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pip install --no-deps --no-build-isolation -e ." in done.stdout
    assert "pytest -q -m cuda tests/test_cuda.py" in done.stdout
    assert "train wide_resnet50_2 @224 ret cudnn.benchmark=False: 15" in done.stdout


def test_memory_note_without_a_drawn_episode_gives_the_largest() -> None:
    from rfmml.trainer.sampler import ret_spec

    setup = SimpleNamespace(
        config=SimpleNamespace(n_max=4, queries=5), split=SimpleNamespace(counts=lambda part: {"a": 10})
    )
    method = SimpleNamespace(setup=setup, specs=[ret_spec([0, 1, 2], 4, 5)], _last_size=(0, 0, 0))
    note = episodic.EpisodicMethod.memory_note(method, 0)  # a subclass whose step() does not record
    assert note == "episodes of up to 24 images; lower --queries (now 5) or --n-max (now 4)"
    method._last_size = (3, 2, 7)
    assert episodic.EpisodicMethod.memory_note(method, 0).startswith("episode of 13 images: K=3 classes")
