"""Windowed scene readers: rasterio for GeoTIFF (optional ``geo`` extra), Pillow otherwise.

Both return, for a pixel window, RGB uint8 [h, w, 3] converted exactly like training images
(:func:`rfmml.runtime.imageio.to_rgb_uint8`: gray replicated, 16-bit rescaled, extra bands dropped)
and a validity mask bool [h, w]. A pixel is invalid ("nodata") when:

- the raster declares a nodata value: all of the chosen RGB bands equal it (GDAL's dataset-mask rule);
- it has an alpha band or an internal mask: the mask is 0;
- it declares neither (``zero_collar``, the default): all three RGB values are 0 (a black collar).

A paletted raster (one band of colour-table indices) is expanded through its colour table to RGB
before anything else, so tiles are classified from colours, never from raw indices; palette index 0 is
nodata only when the raster declares it (or its colour is black under ``zero_collar``, like any black
pixel, or transparent in the table).

Memory: rasterio reads only the requested window, plus GDAL's block cache, capped at two rows of
blocks within 16..256 MiB (:meth:`RasterioScene._cache_option`; GDAL_CACHEMAX in the environment
wins). Pillow cannot decode a JPEG/PNG window alone, so the Pillow reader decodes the whole image
once and crops windows from it: its memory is about 4 bytes per scene pixel, so it refuses scenes over
:data:`MAX_DECODED_PIXELS` (read from the header, before decoding). Use a (tiled) GeoTIFF with rasterio
for big scenes. A read that fails mid-scene (a corrupt block) is one line naming the file and window.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rfmml.runtime.errors import SceneError
from rfmml.runtime.imageio import _pil_to_array, to_rgb_uint8
from rfmml.runtime.output_files import path_text, utf8_path
from rfmml.runtime.tiling import Window

GEO_HINT = 'reading GeoTIFF scenes needs rasterio: pip install "rfmml[geo]"'
GDAL_CACHE_MIN, GDAL_CACHE_MAX = 16 * 2**20, 256 * 2**20
PILLOW_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
TIFF_SUFFIXES = (".tif", ".tiff")
GEOTIFF_TAGS = (33550, 33922, 34264, 34735)  # pixel scale, tie point, transformation, GeoKeyDirectory
MAX_DECODED_PIXELS = 2**28  # Pillow scenes are decoded whole: 268 Mpx is about 1 GiB of RGBA


def _first_line(error: BaseException) -> str:
    """The library's own reason: rasterio wraps GDAL's message ("Read failed. See previous
    exception") around the real one, which is the cause or context of the error."""
    for candidate in (error.__cause__, error.__context__, error):
        text = str(candidate or "").strip()
        if text and "See previous exception" not in text:
            return text.splitlines()[0]
    return type(error).__name__


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
                self.ds = rasterio.open(utf8_path(path, "GDAL (reading GeoTIFF scenes)"))
        except rasterio.errors.RasterioIOError as error:
            raise SceneError(f"{path_text(path)}: cannot open scene ({_first_line(error)})") from None
        ds = self.ds
        self.height, self.width = ds.height, ds.width
        try:
            self.bands = self._choose_bands(bands)
            self.colours = self._colour_table()
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
        paletted = ", colour table expanded to RGB" if self.colours is not None else ""
        self.description = f"{ds.count} band(s) {ds.dtypes[0]}, RGB from bands {list(self.bands)}{paletted}"

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

    def _colour_table(self) -> np.ndarray | None:
        """uint8 [n, 4] RGBA per palette index when the (single) chosen band is paletted, else None."""
        from rasterio.enums import ColorInterp

        band = self.bands[0]
        if len(set(self.bands)) != 1 or self.ds.colorinterp[band - 1] != ColorInterp.palette:
            return None
        if self.ds.dtypes[band - 1] not in ("uint8", "uint16"):
            raise SceneError(f"{path_text(self.path)}: a colour table on {self.ds.dtypes[band - 1]} data")
        try:
            entries = self.ds.colormap(band)
        except ValueError as error:  # declared paletted, but no table
            raise SceneError(
                f"{path_text(self.path)}: paletted band without a colour table ({error})"
            ) from None
        table = np.zeros((256 if self.ds.dtypes[band - 1] == "uint8" else 65536, 4), dtype=np.uint8)
        for index, rgba in entries.items():
            if 0 <= index < len(table):
                table[index] = rgba
        return table

    def _choose_bands(self, bands: tuple[int, int, int] | None) -> tuple[int, ...]:
        from rasterio.enums import ColorInterp

        count = self.ds.count
        kinds = {np.dtype(t).kind for t in self.ds.dtypes}
        if not kinds <= {"u", "i", "f"}:
            raise SceneError(f"{path_text(self.path)}: unsupported pixel type {self.ds.dtypes[0]}")
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

    def _read(self, window: Window, mask: bool = False, **kwargs) -> np.ndarray:
        """The chosen bands [bands, h, w] of ``window`` (``mask``: the first band's GDAL mask [h, w]);
        a failure mid-scene is a SceneError naming the file and the window."""
        from rasterio.errors import RasterioError
        from rasterio.windows import Window as RioWindow

        rio_window = RioWindow(window.x0, window.y0, window.width, window.height)
        try:
            if mask:
                return self.ds.read_masks(self.bands[0], window=rio_window)
            return self.ds.read(indexes=list(self.bands), window=rio_window, **kwargs)
        except (RasterioError, OSError) as error:
            raise SceneError(
                f"{path_text(self.path)}: read failed in window x {window.x0}..{window.x1}, "
                f"y {window.y0}..{window.y1} ({_first_line(error)})"
            ) from None

    def _to_rgb(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """RGB uint8 [h, w, 3] from raw bands [bands, h, w], and the colour table's alpha [h, w] > 0."""
        if self.colours is None:
            return to_rgb_uint8(np.moveaxis(raw, 0, -1))[0], None
        rgba = self.colours[raw[0]]
        return np.ascontiguousarray(rgba[:, :, :3]), rgba[:, :, 3] > 0

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 [h, w, 3] and validity bool [h, w] for ``window``."""
        raw = self._read(window)  # [bands, h, w]
        rgb, opaque = self._to_rgb(raw)
        if self.mask_mode == "nodata":
            valid = np.zeros(raw.shape[1:], dtype=bool)
            for band, value in zip(raw, self.nodata, strict=True):
                valid |= ~np.isnan(band) if np.isnan(value) else band != value
        elif self.mask_mode == "mask":
            valid = self._read(window, mask=True) > 0
        elif self.mask_mode == "zero":
            valid = rgb.any(axis=2) if self.colours is not None else raw.any(axis=0)
        else:
            valid = np.ones(raw.shape[1:], dtype=bool)
        return rgb, valid if opaque is None else valid & opaque

    def overview(self, max_side: int) -> np.ndarray:
        """The whole scene downsampled (area average; nearest for a palette) so its longer side is
        <= max_side: uint8 [h, w, 3]."""
        from rasterio.enums import Resampling

        scale = max(self.height, self.width) / max_side
        shape = (max(1, round(self.height / max(scale, 1))), max(1, round(self.width / max(scale, 1))))
        resampling = Resampling.nearest if self.colours is not None else Resampling.average
        whole = Window(0, 0, self.width, self.height)
        raw = self._read(whole, out_shape=(len(self.bands), *shape), resampling=resampling)
        return self._to_rgb(raw)[0]

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
            Image.MAX_IMAGE_PIXELS = None  # a scene is larger than a tile: the check below is the limit
            self.image = Image.open(path)
            width, height = self.image.size
            if width * height > MAX_DECODED_PIXELS:
                self.image.close()
                raise SceneError(
                    f"{path_text(path)}: {width}x{height} px is more than the {MAX_DECODED_PIXELS} px a "
                    "JPEG/PNG scene may have (it is decoded whole); convert it to a tiled GeoTIFF"
                )
            self.image.load()
        except UnidentifiedImageError:
            raise SceneError(f"{path_text(path)}: not an image Pillow can read") from None
        except (OSError, SyntaxError, ValueError) as error:
            if isinstance(error, SceneError):
                raise
            raise SceneError(f"{path_text(path)}: corrupt or truncated image ({error})") from None
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
        raise SceneError(f"scene not found: {path_text(path)}")
    if path.stat().st_size == 0:
        raise SceneError(f"{path_text(path)}: empty file")
    suffix = path.suffix.lower()
    if suffix in PILLOW_SUFFIXES:
        if bands is not None:
            raise SceneError(f"{path}: --bands applies to rasters read with rasterio (GeoTIFF), not {suffix}")
        return PillowScene(path, zero_collar)
    if have_rasterio():
        return RasterioScene(path, bands, zero_collar)
    if suffix in TIFF_SUFFIXES and not _is_geotiff(path) and bands is None:
        return PillowScene(path, zero_collar)
    raise SceneError(f"{path_text(path)}: {GEO_HINT}")
