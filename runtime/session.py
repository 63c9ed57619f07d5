"""Open any model edgesr produces and upscale images with the tiling rules of :mod:`.tiling`.

Backends: PyTorch checkpoints / zoo names / quantized artifacts (eager, any tile) and ``.pte`` files (the
tile they were exported for). Each reads scale and tile shape from the model itself.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from edgesr.runtime.tiling import iter_tiled_bands, plan_tiles

DEFAULT_TILE = (64, 64)
DEFAULT_OVERLAP = 16


class TorchModel:
    """An FP or fake-quant SwinIR run eagerly on static tiles (the desktop reference of an exported file)."""

    def __init__(self, model, tile: tuple[int, int] = DEFAULT_TILE, threads: int | None = None, name: str = ""):
        import torch

        self.model, self.tile, self.name = model.eval(), tuple(tile), name
        self.metadata = {"scale": model.scale, "tile": list(self.tile), "window_size": model.window_size,
                         "size_multiple": model.window_size}
        if threads:
            torch.set_num_threads(threads)

    @property
    def scale(self) -> int:
        return self.model.scale

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def open_model(spec: str | Path, threads: int = 1, tile: tuple[int, int] = DEFAULT_TILE, backend: str = "auto"):
    """A ``.pte`` file, a quantized artifact, a checkpoint or a zoo name -> a runnable tile model."""
    from edgesr.runtime.backends import open_with

    return open_with(spec, backend, threads=threads, tile=tile)


class Session:
    """``Session(path, threads=..., backend="auto").upscale(image)``: the model's own scale and tile, the
    tiling rules of :mod:`edgesr.runtime.tiling`.

    Images: NumPy (H, W[, C]) arrays, uint8, uint16 or float in [0, 1], or PIL images; the result has the
    input's kind and dtype. Gray (C = 1 or 2-D) runs as RGB and comes back gray (the channels' mean); RGBA
    drops alpha with a warning; uint16 and float go through 8 bits, the models' precision. PIL images are
    converted as files are (:func:`edgesr.data.io.to_rgb_array`)."""

    def __init__(self, path: str | Path, threads: int = 1, backend: str = "auto",
                 tile: tuple[int, int] = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP):
        self.model = open_model(path, threads=threads, tile=tile, backend=backend)
        self.overlap = overlap

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def tile(self) -> tuple[int, int]:
        return tuple(self.model.tile)

    def upscale(self, image):
        from PIL import Image

        from edgesr.data.io import to_rgb_array
        from edgesr.errors import ImageError

        if isinstance(image, Image.Image):
            return Image.fromarray(upscale(self.model, to_rgb_array(image), self.overlap))
        arr = np.asarray(image)
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
            rgb = self.upscale(np.repeat(arr.reshape(*arr.shape[:2], 1), 3, axis=2))
            gray = rgb.astype(np.float64).mean(axis=2)  # back to one channel: the three channels' mean
            gray = gray if np.issubdtype(arr.dtype, np.floating) else np.floor(gray + 0.5)
            return gray.astype(arr.dtype).reshape(rgb.shape[0], rgb.shape[1], *arr.shape[2:])
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or 0 in arr.shape:
            raise ImageError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array, got shape {arr.shape}")
        if arr.shape[2] == 4:
            warnings.warn("alpha channel dropped", stacklevel=2)
            arr = arr[..., :3]
        if arr.dtype == np.uint16:
            u8 = np.floor(arr.astype(np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
            out = upscale(self.model, u8, self.overlap).astype(np.float64) / 255.0 * 65535.0
            return np.floor(out + 0.5).astype(np.uint16)
        if arr.dtype == np.uint8:
            return upscale(self.model, np.ascontiguousarray(arr), self.overlap)
        if np.issubdtype(arr.dtype, np.floating):
            u8 = np.floor(np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            return upscale(self.model, u8, self.overlap).astype(arr.dtype) / 255.0
        raise ImageError(f"unsupported array type {arr.dtype} (uint8, or float in [0, 1])")


def size_multiple(model) -> int:
    """What image sides are padded to before tiling (the window size), from the model's metadata."""
    meta = model.metadata
    return int(meta.get("size_multiple") or meta.get("window_size") or 1)


def tile_count(model, height: int, width: int, overlap: int = DEFAULT_OVERLAP) -> int:
    m, tile = size_multiple(model), tuple(model.tile)
    return plan_tiles(height + -height % m, width + -width % m, tile, min(overlap, min(tile) - 1), model.scale).count


def upscale_bands(model, image: np.ndarray, overlap: int = DEFAULT_OVERLAP, feather: bool = True, on_tile=None):
    """(H, W, 3) uint8 RGB -> finished (y0, uint8 band) rows of the (sH, sW, 3) output, top to bottom, tile by
    tile as the device does. ``overlap`` is capped at the tile size - 1."""
    tile = tuple(model.tile)

    def run_tile(t: np.ndarray) -> np.ndarray:
        return model.run(t.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)

    x = image.astype(np.float32) / np.float32(255.0)
    for y0, band in iter_tiled_bands(x, run_tile, tile, min(overlap, min(tile) - 1), model.scale, feather,
                                     on_tile, size_multiple(model)):
        yield y0, np.floor(np.clip(band, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)  # as edgesr.data.io.to_uint8


def upscale(model, image: np.ndarray, overlap: int = DEFAULT_OVERLAP, feather: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (sH, sW, 3) uint8: :func:`upscale_bands` assembled."""
    return np.concatenate([band for _, band in upscale_bands(model, image, overlap, feather)], axis=0)
