"""Decoding and resizing of image files, shared by training and inference.

Training (``rfmml.trainer``) and inference (``rfmml.runtime``) both decode with this module so that a
tile gives the network the same pixels in both places. Only numpy and Pillow are used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rfmml.runtime.errors import ImageReadError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
# A tile is at most 4096 x 4096 px (50 MB decoded): a file declaring more is refused from its header,
# before any pixel is decoded (a 254-byte PNG can declare 60000 x 60000 px). Pillow's own limit is set
# to the same value explicitly (its default, 89 Mpx with an error only at twice that, is far too lax),
# and its warning between 1x and 2x is silenced because read_rgb refuses those files itself.
MAX_TILE_PIXELS = 4096 * 4096
Image.MAX_IMAGE_PIXELS = MAX_TILE_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# One resampling filter for training and inference: bilinear with antialiasing (Pillow's default
# for downsizing), applied to uint8 RGB.
RESAMPLE = Image.Resampling.BILINEAR


@dataclass(frozen=True)
class Decoded:
    """An RGB uint8 image, shape [H, W, 3], and how it was converted (None when it was plain RGB)."""

    pixels: np.ndarray
    conversion: str | None


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def to_rgb_uint8(array: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Convert an [H, W] or [H, W, C] array of any integer/float depth to RGB uint8 [H, W, 3].

    Gray is replicated to three channels, RGBA (or more bands) keeps the first three, 16-bit and
    float data are rescaled by their dtype's range (float assumed in [0, 1]).
    """
    conversion: list[str] = []
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
        conversion.append("gray")
    elif array.ndim == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
        conversion.append("gray")
    elif array.ndim == 3 and array.shape[2] == 2:  # gray + alpha
        array = np.repeat(array[:, :, :1], 3, axis=2)
        conversion.append("gray+alpha")
    elif array.ndim == 3 and array.shape[2] > 3:
        conversion.append("rgba" if array.shape[2] == 4 else f"{array.shape[2]}-band")
        array = array[:, :, :3]
    elif array.ndim != 3:
        raise ValueError(f"unsupported image shape {array.shape}")
    if array.dtype == np.uint8:
        pass
    elif array.dtype == np.uint16:
        array = (array.astype(np.uint32) * 255 + 32767) // 65535
        conversion.append("16-bit")
    elif np.issubdtype(array.dtype, np.floating):
        array = np.clip(np.nan_to_num(array) * 255.0 + 0.5, 0, 255)
        conversion.append("float")
    elif np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        array = (array.astype(np.float64) - info.min) * 255.0 / (info.max - info.min) + 0.5
        conversion.append(f"{info.bits}-bit")
    else:
        raise ValueError(f"unsupported pixel type {array.dtype}")
    return np.ascontiguousarray(array.astype(np.uint8)), ("+".join(conversion) or None)


def _pil_to_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGB", "L", "RGBA", "LA"):
        return np.asarray(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "I":
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
    if image.mode == "F":
        return np.asarray(image)
    if image.mode == "P" and "transparency" in image.info:
        return np.asarray(image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def _too_large(size: str) -> str:
    return f"too large for a tile: {size} is more than the limit of {MAX_TILE_PIXELS} px (4096 x 4096)"


def read_rgb(path: str | Path) -> Decoded:
    """Decode ``path`` to RGB uint8 [H, W, 3]; raise ImageReadError with a one-line reason."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(path, "empty file")
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_TILE_PIXELS:
                raise ImageReadError(path, _too_large(f"{width}x{height} px"))
            image.load()  # forces the full decode so a truncated file fails here
            array = _pil_to_array(image)
        pixels, conversion = to_rgb_uint8(array)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image Pillow can read") from None
    except Image.DecompressionBombError:  # declared beyond twice the limit: refused by Pillow's open
        raise ImageReadError(path, _too_large("its declared size")) from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated / corrupt data, odd layouts
        raise ImageReadError(path, f"corrupt or truncated image ({error})") from None
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageReadError(path, "image has no pixels")
    return Decoded(pixels, conversion)


def resize_rgb(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize RGB uint8 [H, W, 3] to ``size`` = (height, width) with the shared filter."""
    height, width = size
    if pixels.shape[0] == height and pixels.shape[1] == width:
        return pixels
    image = Image.fromarray(pixels, mode="RGB")
    return np.asarray(image.resize((width, height), RESAMPLE))


def load_tile(path: str | Path, size: tuple[int, int]) -> Decoded:
    """Decode and resize one image file: the exact pre-processing of training and inference."""
    decoded = read_rgb(path)
    return Decoded(resize_rgb(decoded.pixels, size), decoded.conversion)
