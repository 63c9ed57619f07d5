"""Image reading with one-line errors and documented conversions.

Conversions: grayscale -> RGB (channels replicated; the SR benchmarks treat gray images so), RGBA/LA/
palette-with-alpha -> RGB by dropping alpha (with a warning), 16-bit -> 8-bit (rounded, with a warning),
EXIF orientation applied.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgesr.errors import EdgesrError, ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_rgb_array(im, name=str(path))
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{path}: cannot read image ({e})") from None


def is_grayscale_file(path: str | Path) -> bool:
    with Image.open(path) as im:
        return im.mode in ("L", "LA", "I;16", "I;16B", "I;16L", "I", "F", "1")


def to_rgb_array(im: Image.Image, name: str = "image") -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if mode != "F" else 1.0
        warnings.warn(f"{name}: {mode} image converted to 8 bits", stacklevel=3)
        arr = np.clip(np.floor(arr / peak * 255.0 + 0.5), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        warnings.warn(f"{name}: alpha channel dropped", stacklevel=3)
    if mode != "RGB":
        im = im.convert("RGB")
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"{name}: unsupported image layout {arr.shape}")
    return np.ascontiguousarray(arr)


def list_images(folder: str | Path) -> list[Path]:
    """Image files in a folder, sorted by name; a clear error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ImageError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def make_output_dir(path: str | Path) -> list[Path]:
    """Create an output folder (with its parents) and check it takes files, before any long work; returns the
    folders this call created, deepest first, so a run that fails can remove them again. A probe file is created
    and removed: permission bits say nothing on read-only or virtual file systems."""
    import os
    import tempfile

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise EdgesrError(f"{p} exists and is not a folder")
    created = [d for d in (p, *p.parents) if not d.exists()]
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".edgesr-probe-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise EdgesrError(f"cannot write into the output folder {p}: {e.strerror or e}") from None
    return created


def remove_empty_dirs(dirs: list[Path]) -> None:
    """Remove these folders (deepest first) where they are empty; others stay."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            pass


def save_png(arr: np.ndarray, path: str | Path) -> None:
    """Write atomically: a temporary file next to the target, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        Image.fromarray(arr).save(tmp, format="PNG")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def to_tensor(img: np.ndarray):
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0).unsqueeze(0)


def to_uint8(t) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded as SwinIR's test script does."""
    x = t.detach().float().clamp_(0, 1).squeeze(0).permute(1, 2, 0).cpu().numpy()
    return np.floor(x * 255.0 + 0.5).astype(np.uint8)
