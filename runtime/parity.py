"""Desktop-vs-device parity: compare two outputs (or two folders of outputs) pixel by pixel.

Per pair: PSNR over RGB (peak 255), max and mean absolute error, share of values off by more than one level,
and a grid of per-tile max errors (tile size in output pixels) with an error heatmap PNG, so a mismatch
confined to one tile (a tiling or edge-padding difference) shows where it is.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgesr.data.io import list_images, load_rgb, save_png
from edgesr.errors import EdgesrError


def compare(a: np.ndarray, b: np.ndarray, tile: int = 256) -> dict:
    if a.shape != b.shape:
        raise EdgesrError(f"outputs differ in size: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]}")
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    mse = float(np.mean(d.astype(np.float64) ** 2))
    grid = [[int(d[y : y + tile, x : x + tile].max()) for x in range(0, d.shape[1], tile)]
            for y in range(0, d.shape[0], tile)]
    return {
        "psnr": math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse),
        "max_abs": int(d.max()),
        "mean_abs": float(d.mean()),
        "share_over_1": float(np.mean(d > 1)),
        "tile": tile,
        "tile_max_abs": grid,
    }


def heatmap(a: np.ndarray, b: np.ndarray, full_scale: int = 8) -> np.ndarray:
    """(H, W, 3) uint8: black = equal, red = off by ``full_scale`` levels or more, yellow tones in between."""
    d = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2).astype(np.float32)
    t = np.clip(d / full_scale, 0.0, 1.0)
    img = np.zeros((*d.shape, 3), np.uint8)
    img[..., 0] = np.round(255 * np.clip(2 * t, 0, 1))
    img[..., 1] = np.round(255 * np.clip(2 * t, 0, 1) * (1 - t))
    return img


def pairs(a: str | Path, b: str | Path) -> list[tuple[str, Path, Path]]:
    a, b = Path(a), Path(b)
    if a.is_dir() != b.is_dir():
        raise EdgesrError(f"compare a file with a file or a folder with a folder ({a} vs {b})")
    if not a.is_dir():
        return [(a.name, a, b)]
    fa = {p.stem: p for p in list_images(a)}
    fb = {p.stem: p for p in list_images(b)}
    missing = sorted(set(fa) ^ set(fb))
    if missing:
        raise EdgesrError(f"{len(missing)} image(s) lack a counterpart, e.g. {missing[0]!r}")
    return [(k, fa[k], fb[k]) for k in sorted(fa)]


def parity(a: str | Path, b: str | Path, tile: int = 256, heatmap_dir: str | Path | None = None) -> dict:
    rows = []
    for name, pa, pb in pairs(a, b):
        ia, ib = load_rgb(pa), load_rgb(pb)
        try:
            r = compare(ia, ib, tile)
        except EdgesrError as e:
            raise EdgesrError(f"{name}: {e}") from None
        r["name"] = name
        if heatmap_dir is not None:
            out = Path(heatmap_dir) / f"{Path(name).stem}_diff.png"
            save_png(heatmap(ia, ib), out)
            r["heatmap"] = str(out)
        rows.append(r)
    worst = max(rows, key=lambda r: r["max_abs"])
    finite = [r["psnr"] for r in rows if math.isfinite(r["psnr"])]
    return {
        "images": rows,
        "max_abs": worst["max_abs"],
        "worst": worst["name"],
        "min_psnr": min(finite) if finite else math.inf,
        "share_over_1": float(np.mean([r["share_over_1"] for r in rows])),
    }
