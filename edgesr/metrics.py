"""PSNR and SSIM with the SR conventions: Y channel (MATLAB BT.601), border of ``scale`` pixels cropped."""

from __future__ import annotations

import numpy as np

from edgesr.data.color import rgb_to_y


def _prepare(img: np.ndarray, border: int, y_channel: bool, gray: bool = False) -> np.ndarray:
    if img.ndim == 3 and gray:
        # Grayscale sources are scored on their own 0..255 gray level (the published baselines do so):
        # full-range luma, i.e. MATLAB's Y with the studio-swing offset and gain undone.
        x = (rgb_to_y(img) - 16.0) * (255.0 / 219.0)
    elif img.ndim == 3 and y_channel:
        x = rgb_to_y(img)
    else:
        x = img.astype(np.float64)
        if img.dtype != np.uint8:
            x = x * 255.0
    if border:
        x = x[border:-border, border:-border]
    return x


def psnr(a: np.ndarray, b: np.ndarray, border: int = 0, y_channel: bool = True, gray: bool = False) -> float:
    """PSNR in dB between two uint8 images (or floats in [0, 1]) on the 0..255 scale.

    ``gray``: the reference came from a grayscale file; score the gray level instead of MATLAB's Y.
    """
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    x, y = _prepare(a, border, y_channel, gray), _prepare(b, border, y_channel, gray)
    mse = np.mean((x - y) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    g = np.exp(-((np.arange(size) - size // 2) ** 2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation with a 1-D kernel along both axes."""
    k = len(g)
    rows = sum(g[i] * x[i : x.shape[0] - k + 1 + i] for i in range(k))
    return sum(g[i] * rows[:, i : rows.shape[1] - k + 1 + i] for i in range(k))


def _ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = _gaussian_window()
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mx * mx
    syy = _filter_valid(y * y, g) - my * my
    sxy = _filter_valid(x * y, g) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def ssim(a: np.ndarray, b: np.ndarray, border: int = 0, y_channel: bool = True, gray: bool = False) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5), averaged over channels if not Y."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    x, y = _prepare(a, border, y_channel, gray), _prepare(b, border, y_channel, gray)
    if x.ndim == 2:
        return _ssim_plane(x, y)
    return float(np.mean([_ssim_plane(x[..., c], y[..., c]) for c in range(x.shape[-1])]))
