"""Benchmark sets laid out as ``<root>/benchmark/<Set>/HR`` and ``LR_bicubic/X<s>/<name>x<s>.png``.

When the LR folder is absent the LR images are made from HR with the MATLAB-compatible bicubic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from edgesr.data.imresize import bicubic_downscale, modcrop
from edgesr.data.io import is_grayscale_file, list_images, load_rgb
from edgesr.data.paths import resolve_data_root
from edgesr.errors import DataError


@dataclass
class SRPair:
    name: str
    lr: np.ndarray  # (h, w, 3) uint8
    hr: np.ndarray  # (h*s, w*s, 3) uint8, modcropped
    gray: bool = False  # the HR file is grayscale (scored on its gray level)


def benchmark_dir(name: str, data_root: str | Path | None = None) -> Path:
    root = resolve_data_root(data_root)
    folder = root / "benchmark" / name
    if not (folder / "HR").is_dir():
        have = sorted(p.name for p in (root / "benchmark").glob("*")) if (root / "benchmark").is_dir() else []
        raise DataError(f"benchmark set {name!r} not found under {root / 'benchmark'} (have: {', '.join(have) or 'none'})")
    return folder


def iter_pairs(name: str, scale: int, data_root: str | Path | None = None) -> Iterator[SRPair]:
    folder = benchmark_dir(name, data_root)
    lr_dir = folder / "LR_bicubic" / f"X{scale}"
    for hr_path in list_images(folder / "HR"):
        hr = modcrop(load_rgb(hr_path), scale)
        lr_path = lr_dir / f"{hr_path.stem}x{scale}{hr_path.suffix}"
        if lr_path.is_file():
            lr = load_rgb(lr_path)
            if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
                raise DataError(f"{lr_path}: size {lr.shape[1]}x{lr.shape[0]} does not match HR {hr_path} at x{scale}")
        else:
            lr = bicubic_downscale(hr, scale)
        yield SRPair(hr_path.stem, lr, hr, gray=is_grayscale_file(hr_path))


def count_images(name: str, data_root: str | Path | None = None) -> int:
    return len(list_images(benchmark_dir(name, data_root) / "HR"))
