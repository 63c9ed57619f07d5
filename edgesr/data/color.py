"""Colour conversions as MATLAB defines them (the SR metrics convention)."""

from __future__ import annotations

import numpy as np

# MATLAB rgb2ycbcr (BT.601, studio swing) for RGB in [0, 1]; rows give Y, Cb, Cr in the 0..255 scale.
_YCBCR = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
_OFFSET = np.array([16.0, 128.0, 128.0])


def _unit_float(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float64)
    return x / 255.0 if img.dtype == np.uint8 else x


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y channel (float64, 16..235) of an (H, W, 3) RGB image, uint8 or float in [0, 1]."""
    return _unit_float(img) @ _YCBCR[0] + _OFFSET[0]


def rgb_to_ycbcr(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) float64 YCbCr in MATLAB's 0..255 scale."""
    return _unit_float(img) @ _YCBCR.T + _OFFSET
