"""Training / calibration patches from HR folders (T91, BSD200 under ``<root>/calibration``).

LR images are made once per (image, scale) with the MATLAB-compatible bicubic on the whole image, so patch
borders see real context. Sampling is a pure function of (seed, step): a resumed run draws the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgesr.data.imresize import bicubic_downscale, imresize
from edgesr.data.io import list_images, load_rgb
from edgesr.data.paths import resolve_data_root

CALIBRATION_FOLDERS = ("T91", "BSD200")


def calibration_files(data_root: str | Path | None = None, folders=CALIBRATION_FOLDERS) -> list[Path]:
    root = resolve_data_root(data_root) / "calibration"
    files: list[Path] = []
    for f in folders:
        files += list_images(root / f)
    return files


def split_holdout(files: list[Path], every: int = 20) -> tuple[list[Path], list[Path]]:
    """Deterministic train / validation split: every ``every``-th file (sorted by folder, name) is held out."""
    files = sorted(files, key=lambda p: (p.parent.name, p.name))
    val = files[::every]
    train = [f for i, f in enumerate(files) if i % every]
    return train, val


@dataclass
class PairImage:
    lr: np.ndarray
    hr: np.ndarray


def build_pairs(files: list[Path], scale: int, downscales=(1.0,), progress=None) -> list[PairImage]:
    """LR/HR pairs for each file and each extra HR downscale factor (the classic augmentation of small sets)."""
    pairs: list[PairImage] = []
    for path in files:
        img = load_rgb(path)
        for f in downscales:
            hr = img if f == 1.0 else imresize(img, scale=f)
            if min(hr.shape[:2]) < 2 * scale:
                continue
            lr = bicubic_downscale(hr, scale)
            pairs.append(PairImage(lr, hr[: lr.shape[0] * scale, : lr.shape[1] * scale]))
        if progress is not None:
            progress()
    return pairs


def augment8(x: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 dihedral transforms (k in 0..7) of an (H, W, C) array."""
    if k & 4:
        x = x[:, ::-1]
    return np.rot90(x, k & 3)


class PatchSampler:
    """Random (LR, HR) patch batches; batch ``step`` depends only on (seed, step)."""

    def __init__(self, pairs: list[PairImage], scale: int, patch: int, batch: int, seed: int = 0, augment: bool = True):
        usable = [p for p in pairs if min(p.lr.shape[:2]) >= patch]
        if not usable:
            raise ValueError(f"no image has an LR side of at least {patch} px")
        self.pairs, self.scale, self.patch, self.batch = usable, scale, patch, batch
        self.seed, self.augment = seed, augment

    def batch_at(self, step: int, patch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Float NCHW batches in [0, 1]."""
        to_t = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(255.0)  # noqa: E731
        lr, hr = self.batch_u8(step, patch)
        return to_t(lr), to_t(hr)

    def batch_u8(self, step: int, patch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The same batch as uint8 NHWC arrays (4x fewer bytes to copy to an accelerator)."""
        p = patch or self.patch
        s = self.scale
        rng = np.random.default_rng([self.seed, step])
        lrs, hrs = [], []
        for _ in range(self.batch):
            pair = self.pairs[rng.integers(len(self.pairs))]
            h, w = pair.lr.shape[:2]
            y, x = rng.integers(h - p + 1), rng.integers(w - p + 1)
            lr = pair.lr[y : y + p, x : x + p]
            hr = pair.hr[y * s : (y + p) * s, x * s : (x + p) * s]
            if self.augment:
                k = int(rng.integers(8))
                lr, hr = augment8(lr, k), augment8(hr, k)
            lrs.append(lr)
            hrs.append(hr)
        return np.stack(lrs), np.stack(hrs)
