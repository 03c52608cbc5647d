"""Windowed scene readers: rasterio for GeoTIFF (optional ``geo`` extra), Pillow otherwise.

Both return, for a pixel window, RGB uint8 [h, w, 3] converted exactly like training images
(:func:`rfmml.runtime.imageio.to_rgb_uint8`: gray replicated, 16-bit rescaled, extra bands dropped)
and a validity mask bool [h, w]. A pixel is invalid ("nodata") when:

- the raster declares a nodata value: all of the chosen RGB bands equal it (GDAL's dataset-mask rule);
- it has an alpha band or an internal mask: the mask is 0;
- it declares neither (``zero_collar``, the default): all three RGB values are 0 (a black collar).

Memory: rasterio reads only the requested window, plus GDAL's block cache, capped at two rows of
blocks within 16..256 MiB (:meth:`RasterioScene._cache_option`; GDAL_CACHEMAX in the environment
wins). Pillow cannot decode a JPEG/PNG window alone, so the Pillow reader decodes the whole image
once and crops windows from it: its memory is about 4 bytes per scene pixel. Use a (tiled) GeoTIFF
with rasterio for big scenes.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rfmml.runtime.errors import SceneError
from rfmml.runtime.imageio import _pil_to_array, to_rgb_uint8
from rfmml.runtime.tiling import Window

GEO_HINT = 'reading GeoTIFF scenes needs rasterio: pip install "rfmml[geo]"'
GDAL_CACHE_MIN, GDAL_CACHE_MAX = 16 * 2**20, 256 * 2**20
PILLOW_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
TIFF_SUFFIXES = (".tif", ".tiff")
GEOTIFF_TAGS = (33550, 33922, 34264, 34735)  # pixel scale, tie point, transformation, GeoKeyDirectory


def have_rasterio() -> bool:
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    return True


class RasterioScene:
    """A raster opened with rasterio; ``read`` returns one window (never the whole scene)."""

    def __init__(self, path: Path, bands: tuple[int, int, int] | None = None, zero_collar: bool = True):
        import rasterio
        from rasterio.enums import MaskFlags

        self.path = path
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                self.ds = rasterio.open(path)
        except rasterio.errors.RasterioIOError as error:
            raise SceneError(f"{path}: cannot open scene ({str(error).splitlines()[0]})") from None
        ds = self.ds
        self.height, self.width = ds.height, ds.width
        try:
            self.bands = self._choose_bands(bands)
        except SceneError:
            ds.close()
            raise
        self._env = rasterio.Env(**self._cache_option())
        self._env.__enter__()
        self.georeferenced = ds.crs is not None or not ds.transform.is_identity
        self.crs_wkt = ds.crs.to_wkt() if ds.crs is not None else None
        self.transform = tuple(ds.transform)[:6] if self.georeferenced else None
        flags = ds.mask_flag_enums[self.bands[0] - 1]
        nodata = [ds.nodatavals[b - 1] for b in self.bands]
        if MaskFlags.alpha in flags or MaskFlags.per_dataset in flags:
            self.mask_mode = "mask"
        elif MaskFlags.nodata in flags and all(v is not None for v in nodata):
            self.mask_mode, self.nodata = "nodata", nodata
        else:
            self.mask_mode = "zero" if zero_collar else "none"
        self.description = f"{ds.count} band(s) {ds.dtypes[0]}, RGB from bands {list(self.bands)}"

    def _cache_option(self) -> dict[str, int]:
        """GDAL block cache: two rows of blocks (tiles are read row by row), within 16..256 MiB.

        Without a cap GDAL caches up to 5 % of RAM, which would grow with the scene. The user's
        GDAL_CACHEMAX environment variable wins when set.
        """
        if "GDAL_CACHEMAX" in os.environ:
            return {}
        block_h = self.ds.block_shapes[0][0]
        itemsize = np.dtype(self.ds.dtypes[0]).itemsize
        row_of_blocks = self.ds.width * block_h * self.ds.count * itemsize
        return {"GDAL_CACHEMAX": int(min(max(2 * row_of_blocks, GDAL_CACHE_MIN), GDAL_CACHE_MAX))}

    def _choose_bands(self, bands: tuple[int, int, int] | None) -> tuple[int, ...]:
        from rasterio.enums import ColorInterp

        count = self.ds.count
        if bands is not None:
            bad = [b for b in bands if not 1 <= b <= count]
            if bad:
                raise SceneError(f"{self.path}: --bands {list(bands)} outside 1..{count}")
            return tuple(bands)
        interp = list(self.ds.colorinterp)
        rgb = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        if all(c in interp for c in rgb):
            return tuple(interp.index(c) + 1 for c in rgb)
        if count >= 3:
            return (1, 2, 3)
        return (1,)  # gray (+ alpha): replicated to RGB like training

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 [h, w, 3] and validity bool [h, w] for ``window``."""
        from rasterio.windows import Window as RioWindow

        rio_window = RioWindow(window.x0, window.y0, window.width, window.height)
        raw = self.ds.read(indexes=list(self.bands), window=rio_window)  # [bands, h, w]
        if self.mask_mode == "nodata":
            valid = np.zeros(raw.shape[1:], dtype=bool)
            for band, value in zip(raw, self.nodata, strict=True):
                valid |= ~np.isnan(band) if np.isnan(value) else band != value
        elif self.mask_mode == "mask":
            valid = self.ds.read_masks(self.bands[0], window=rio_window) > 0
        elif self.mask_mode == "zero":
            valid = raw.any(axis=0)
        else:
            valid = np.ones(raw.shape[1:], dtype=bool)
        rgb, _ = to_rgb_uint8(np.moveaxis(raw, 0, -1))
        return rgb, valid

    def overview(self, max_side: int) -> np.ndarray:
        """The whole scene downsampled (area average) so its longer side is <= max_side: uint8 [h, w, 3]."""
        from rasterio.enums import Resampling

        scale = max(self.height, self.width) / max_side
        shape = (max(1, round(self.height / max(scale, 1))), max(1, round(self.width / max(scale, 1))))
        raw = self.ds.read(
            indexes=list(self.bands), out_shape=(len(self.bands), *shape), resampling=Resampling.average
        )
        return to_rgb_uint8(np.moveaxis(raw, 0, -1))[0]

    def close(self) -> None:
        if getattr(self, "ds", None) is not None:
            self.ds.close()
            self.ds = None
            self._env.__exit__(None, None, None)


class PillowScene:
    """A JPEG/PNG/plain TIFF decoded once by Pillow (see the module docstring on memory)."""

    def __init__(self, path: Path, zero_collar: bool = True) -> None:
        self.path = path
        previous = Image.MAX_IMAGE_PIXELS
        try:
            Image.MAX_IMAGE_PIXELS = None  # a scene is meant to be large; its size is the user's choice
            self.image = Image.open(path)
            self.image.load()
        except UnidentifiedImageError:
            raise SceneError(f"{path}: not an image Pillow can read") from None
        except (OSError, SyntaxError, ValueError) as error:
            raise SceneError(f"{path}: corrupt or truncated image ({error})") from None
        finally:
            Image.MAX_IMAGE_PIXELS = previous
        if self.image.mode == "P":
            self.image = self.image.convert("RGBA" if "transparency" in self.image.info else "RGB")
        self.width, self.height = self.image.size
        self.georeferenced = False
        self.crs_wkt = None
        self.transform = None
        self.zero_collar = zero_collar
        self.has_alpha = self.image.mode in ("RGBA", "LA")
        self.mask_mode = "mask" if self.has_alpha else ("zero" if zero_collar else "none")
        self.description = f"Pillow {self.image.mode} {self.width}x{self.height} (decoded whole)"

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 [h, w, 3] and validity bool [h, w] for ``window``."""
        array = _pil_to_array(self.image.crop((window.x0, window.y0, window.x1, window.y1)))
        rgb, _ = to_rgb_uint8(array)
        if self.has_alpha:
            valid = array[:, :, -1] > 0
        elif self.zero_collar:
            valid = rgb.any(axis=2)
        else:
            valid = np.ones(rgb.shape[:2], dtype=bool)
        return rgb, valid

    def overview(self, max_side: int) -> np.ndarray:
        factor = max(1, -(-max(self.width, self.height) // max_side))
        image = self.image if self.image.mode in ("RGB", "RGBA", "L", "LA") else self.image.convert("RGB")
        return to_rgb_uint8(_pil_to_array(image.reduce(factor) if factor > 1 else image))[0]

    def close(self) -> None:
        self.image.close()


def _is_geotiff(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            tags = getattr(image, "tag_v2", {})
            return any(tag in tags for tag in GEOTIFF_TAGS)
    except (OSError, UnidentifiedImageError):
        return True  # Pillow cannot read it: only rasterio might


def open_scene(
    path: str | Path, bands: tuple[int, int, int] | None = None, zero_collar: bool = True
) -> RasterioScene | PillowScene:
    """Open a scene for windowed reads: rasterio for TIFF and GDAL formats, Pillow for JPEG/PNG."""
    path = Path(path)
    if not path.is_file():
        raise SceneError(f"scene not found: {path}")
    if path.stat().st_size == 0:
        raise SceneError(f"{path}: empty file")
    suffix = path.suffix.lower()
    if suffix in PILLOW_SUFFIXES:
        if bands is not None:
            raise SceneError(f"{path}: --bands applies to rasters read with rasterio (GeoTIFF), not {suffix}")
        return PillowScene(path, zero_collar)
    if have_rasterio():
        return RasterioScene(path, bands, zero_collar)
    if suffix in TIFF_SUFFIXES and not _is_geotiff(path) and bands is None:
        return PillowScene(path, zero_collar)
    raise SceneError(f"{path}: {GEO_HINT}")
