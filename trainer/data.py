"""Decoding a split's images once into a uint8 tensor, with an on-disk cache.

Images are decoded and resized with ``rfmml.runtime.imageio.load_tile`` (the exact pre-processing of
inference) in a thread pool (Pillow releases the GIL while decoding). The cache is one ``.npy`` per
(part, image size, file list) under ``cache_dir``; its key is a SHA-256 of the image size and, for
every file, its path, size and mtime, so an edited or replaced file invalidates it. A JSON sidecar
keeps the count of converted (gray, RGBA, 16-bit...) images so the warning survives a cache hit.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from rfmml.runtime.atomic_files import atomic_write, atomic_write_bytes
from rfmml.runtime.imageio import ImageReadError, load_tile
from rfmml.trainer.errors import InputError
from rfmml.trainer.split import Split


def default_cache_dir() -> Path:
    """$RFMML_CACHE, else $XDG_CACHE_HOME/rfmml, else ~/.cache/rfmml."""
    if os.environ.get("RFMML_CACHE"):
        return Path(os.environ["RFMML_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rfmml"


def default_workers() -> int:
    return min(16, os.cpu_count() or 1)


def decode_paths(paths: list[str], image_size: int, workers: int = 0) -> tuple[np.ndarray, Counter[str]]:
    """Decode ``paths`` to uint8 [N, S, S, 3]; count conversions. InputError names a corrupt file."""
    out = np.empty((len(paths), image_size, image_size, 3), np.uint8)
    conversions: Counter[str] = Counter()

    def one(i: int) -> str | None:
        decoded = load_tile(paths[i], (image_size, image_size))
        out[i] = decoded.pixels
        return decoded.conversion

    try:
        with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
            for conversion in pool.map(one, range(len(paths)), chunksize=64):
                if conversion:
                    conversions[conversion] += 1
    except ImageReadError as error:
        raise InputError(f"cannot read training data: {error}") from None
    except FileNotFoundError as error:
        raise InputError(f"image file not found: {error.filename}") from None
    return out, conversions


def cache_key(paths: list[str], image_size: int) -> str:
    """SHA-256 over the image size and each file's path, size and mtime (ns)."""
    digest = hashlib.sha256(f"rfmml-cache-v1|{image_size}".encode())
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise InputError(f"image file not found: {path}") from None
        digest.update(f"|{path}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def _load_cached(paths: list[str], image_size: int, cache_dir: Path, workers: int):
    key = cache_key(paths, image_size)
    array_path = cache_dir / f"{key[:32]}.npy"
    meta_path = cache_dir / f"{key[:32]}.json"
    if array_path.is_file() and meta_path.is_file():
        try:
            array = np.load(array_path, allow_pickle=False, mmap_mode=None)
            meta = json.loads(meta_path.read_text())
            if array.shape == (len(paths), image_size, image_size, 3) and array.dtype == np.uint8:
                return array, Counter(meta.get("conversions", {}))
        except (OSError, ValueError) as error:
            warnings.warn(f"ignoring unreadable cache {array_path} ({error})", stacklevel=2)
    array, conversions = decode_paths(paths, image_size, workers)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)

        def write_array(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, array, allow_pickle=False)

        atomic_write(array_path, write_array)
        meta = json.dumps({"n": len(paths), "conversions": dict(conversions)}).encode()
        atomic_write_bytes(meta_path, meta)
    except OSError as error:  # a read-only cache folder must not stop training
        warnings.warn(f"could not write the image cache in {cache_dir} ({error})", stacklevel=2)
    return array, conversions


def conversion_message(conversions: Counter[str]) -> str | None:
    """One line counting converted images, or None when every image was 8-bit RGB."""
    total = sum(conversions.values())
    if not total:
        return None
    kinds = ", ".join(f"{k}: {n}" for k, n in sorted(conversions.items()))
    return f"converted {total} image(s) to 8-bit RGB ({kinds})"


def load_part(
    split: Split,
    part: str,
    image_size: int,
    cache_dir: str | Path | None = None,
    workers: int = 0,
    conversions: Counter[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N, S, S, 3] and labels int64 [N] of ``part`` ("train", "val" or "test").

    Synthetic splits (data_root "synthetic:<seed>") regenerate their images. ``cache_dir`` None: no
    cache. Converted images are added to ``conversions`` when given, else reported with one warning.
    """
    paths, labels = split.labels_and_paths(part)
    if split.is_synthetic:
        from rfmml.trainer.synthetic import make_synthetic_dataset, synthetic_index

        seed = int(split.data_root.split(":", 1)[1])
        images, _, _ = make_synthetic_dataset(seed, image_size)
        array = images[[synthetic_index(p) for p in paths]] if paths else images[:0]
        found: Counter[str] = Counter()
    elif cache_dir is not None and paths:
        array, found = _load_cached(paths, image_size, Path(cache_dir), workers)
    else:
        array, found = decode_paths(paths, image_size, workers)
    if conversions is not None:
        conversions.update(found)
    elif (message := conversion_message(found)) is not None:
        warnings.warn(message, stacklevel=2)
    return torch.from_numpy(np.ascontiguousarray(array)), torch.tensor(labels, dtype=torch.int64)
