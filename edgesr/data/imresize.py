"""MATLAB-compatible ``imresize(img, scale, 'bicubic')`` (antialiased when shrinking).

SR benchmarks make LR images with MATLAB, so PSNR figures are comparable only with the same kernel:
Keys cubic (a = -0.5), kernel widened by 1/scale when downscaling, symmetric (mirror) boundary, and
uint8 results rounded half away from zero.
"""

from __future__ import annotations

import functools

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@functools.lru_cache(maxsize=256)
def resize_weights(in_len: int, out_len: int, scale: float, antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(out_len, taps) weights and 0-based source indices for one axis."""
    shrink = scale < 1 and antialias
    width = 4.0 / scale if shrink else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    centre = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in 1-based input coordinates
    left = np.floor(centre - width / 2)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based
    dist = centre[:, None] - idx
    w = scale * _cubic(dist * scale) if shrink else _cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    # Mirror out-of-range indices: ... 2 1 | 1 2 ... n | n n-1 ...
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    src = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    return w, src


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    w, src = resize_weights(img.shape[axis], out_len, scale, antialias)
    moved = np.moveaxis(img, axis, 0)  # (L, ...)
    gathered = moved[src]  # (out, taps, ...)
    out = np.einsum("ot,ot...->o...", w, gathered)
    return np.moveaxis(out, 0, axis)


def imresize(img: np.ndarray, scale: float | None = None, size: tuple[int, int] | None = None, antialias: bool = True) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) image like MATLAB's ``imresize(..., 'bicubic')``.

    Give either ``scale`` (output = ceil(input * scale)) or ``size`` = (out_h, out_w). uint8 in -> uint8
    out (rounded, clipped); float in -> float64 out (unclipped).
    """
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    h, w = img.shape[:2]
    if size is None:
        out_h, out_w = int(np.ceil(h * scale)), int(np.ceil(w * scale))
        sh = sw = float(scale)
    else:
        out_h, out_w = size
        sh, sw = out_h / h, out_w / w
    x = img.astype(np.float64)
    # MATLAB resizes the axis with the smaller scale factor first.
    order = (0, 1) if sh <= sw else (1, 0)
    for axis in order:
        x = _resize_axis(x, axis, out_h if axis == 0 else out_w, sh if axis == 0 else sw, antialias)
    if img.dtype == np.uint8:
        return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)
    return x


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so both sides are multiples of ``scale`` (the SR convention for HR images)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR image from an HR image, as the SR benchmarks make it: modcrop, then MATLAB bicubic 1/scale."""
    hr = modcrop(hr, scale)
    return imresize(hr, size=(hr.shape[0] // scale, hr.shape[1] // scale))


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    return imresize(lr, size=(lr.shape[0] * scale, lr.shape[1] * scale))


def bicubic_y_protocol(hr: np.ndarray, scale: int, gray: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The protocol behind the published bicubic baselines (SRCNN's evaluation code): the HR image's Y channel
    (uint8, MATLAB rgb2ycbcr; the gray level for grayscale files) is shrunk and enlarged by bicubic in floating
    point, rounded to uint8, and compared with the uint8 HR Y. Returns (upscaled Y, HR Y), both uint8 (H, W)."""
    from edgesr.data.color import rgb_to_y

    hr = modcrop(hr, scale)
    y = hr[..., 0].astype(np.float64) if gray else np.floor(rgb_to_y(hr) + 0.5)
    lr = imresize(y / 255.0, size=(y.shape[0] // scale, y.shape[1] // scale))
    up = imresize(lr, size=y.shape)
    return np.clip(np.floor(up * 255.0 + 0.5), 0, 255).astype(np.uint8), y.astype(np.uint8)
