"""Tiled inference as a pure plan plus a blend, so every runtime (Python, Android, the native runner) can
implement the same rules and produce the same pixels.

Rules, per axis (rows and columns are planned independently; a tile is one row start x one column start):

0. The image is mirror-padded (edge repeated) at the bottom/right to a multiple of the model's window size,
   as whole-image inference does; the output is cropped back at the end.
1. An axis shorter than the tile gets one tile at 0; the input is mirror-padded up to the tile length.
2. Otherwise starts are 0, stride, 2*stride, ... with stride = tile - overlap, and the last start is moved
   back to length - tile so that no tile needs padding; duplicate starts are dropped.
3. Blend weights live in output (scaled) coordinates. Where two neighbouring tiles overlap over L output
   pixels, the earlier tile's weight falls linearly (L - p - 0.5) / L and the later one's rises (p + 0.5) / L,
   p = 0..L-1; elsewhere a tile's weight is 1. With ``feather=False`` each overlap is split at its middle
   instead (weights 0 or 1). Weights are then divided by their per-pixel sum, so they always sum to 1.

Example, length 150, tile 64, overlap 16 (stride 48): starts 0, 48, 86; overlaps [48, 64) and [86, 112).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AxisPlan:
    length: int  # input pixels along the axis
    tile: int
    starts: tuple[int, ...]
    pad: int  # reflect padding appended when the axis is shorter than the tile

    def weights(self, scale: int, feather: bool = True) -> np.ndarray:
        """(tiles, length * scale) blend weights in output coordinates; columns sum to 1."""
        out_len, t = self.length * scale, self.tile * scale
        w = np.zeros((len(self.starts), out_len), dtype=np.float64)
        for i, s in enumerate(self.starts):
            w[i, s * scale : min(s * scale + t, out_len)] = 1.0
        for i in range(len(self.starts) - 1):
            lo, hi = self.starts[i + 1] * scale, self.starts[i] * scale + t  # overlap [lo, hi)
            span = hi - lo
            if span <= 0:
                continue
            p = np.arange(span)
            if feather:
                down, up = (span - p - 0.5) / span, (p + 0.5) / span
            else:
                up = (p >= span // 2).astype(np.float64)
                down = 1.0 - up
            w[i, lo:hi] = np.minimum(w[i, lo:hi], down) if i > 0 and feather else down
            w[i + 1, lo:hi] = up
        return w / w.sum(axis=0, keepdims=True)


def plan_axis(length: int, tile: int, overlap: int) -> AxisPlan:
    if length < 1 or tile < 1:
        raise ValueError(f"length and tile must be positive, got {length} and {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")
    if length <= tile:
        return AxisPlan(length, tile, (0,), tile - length)
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return AxisPlan(length, tile, tuple(sorted(set(starts))), 0)


@dataclass(frozen=True)
class TilePlan:
    rows: AxisPlan
    cols: AxisPlan
    scale: int

    @property
    def count(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)


def plan_tiles(height: int, width: int, tile: tuple[int, int], overlap: int, scale: int) -> TilePlan:
    return TilePlan(plan_axis(height, tile[0], overlap), plan_axis(width, tile[1], overlap), scale)


def mirror_pad(image: np.ndarray, pad_h: int, pad_w: int) -> np.ndarray:
    """Pad (H, W, C) at the bottom/right with its mirror image, edge pixel repeated (numpy ``symmetric``, what
    whole-image inference does), again and again for inputs shorter than the padding."""
    while pad_h > 0 or pad_w > 0:
        h, w = image.shape[:2]
        ph, pw = min(pad_h, h), min(pad_w, w)
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
        pad_h, pad_w = pad_h - ph, pad_w - pw
    return image


def iter_tiled_bands(image: np.ndarray, run_tile, tile: tuple[int, int], overlap: int, scale: int,
                     feather: bool = True, on_tile=None, multiple: int = 1):
    """Upscale (H, W, C) float32 with ``run_tile((th, tw, C)) -> (th*s, tw*s, C)``, yielding finished output
    row bands (float32, full output width) from top to bottom; memory stays bounded by one band of tiles.

    ``multiple`` (the model's window size): the image is first mirror-padded to a multiple of it, as
    whole-image inference pads, so that with tile and overlap multiples of it every tile starts on the
    whole image's window grid; the output is cropped back.
    """
    h0, w0 = image.shape[:2]
    image = mirror_pad(image, -h0 % multiple, -w0 % multiple)
    h, w, c = image.shape
    plan = plan_tiles(h, w, tile, overlap, scale)
    wr, wc = plan.rows.weights(scale, feather), plan.cols.weights(scale, feather)
    image = mirror_pad(image, plan.rows.pad, plan.cols.pad)
    th, tw = tile
    out_h, out_w = h0 * scale, w0 * scale
    starts = plan.rows.starts
    band_top, band = 0, np.zeros((0, w * scale, c), np.float32)  # rows [band_top, band_top + len(band))
    for i, r in enumerate(starts):
        oy = r * scale
        hh = min(th * scale, h * scale - oy)
        need = oy + hh - band_top
        if need > band.shape[0]:
            band = np.concatenate([band, np.zeros((need - band.shape[0], *band.shape[1:]), np.float32)])
        for j, q in enumerate(plan.cols.starts):
            y = run_tile(image[r : r + th, q : q + tw])
            ox = q * scale
            ww = min(tw * scale, w * scale - ox)
            weight = np.outer(wr[i, oy : oy + hh], wc[j, ox : ox + ww]).astype(np.float32)[..., None]
            band[oy - band_top : oy - band_top + hh, ox : ox + ww] += y[:hh, :ww] * weight
            if on_tile is not None:
                on_tile()
        done = starts[i + 1] * scale if i + 1 < len(starts) else band_top + band.shape[0]
        if done > band_top:  # rows above the next tile row are final
            lo, hi = band_top, min(done, out_h)
            if hi > lo:
                yield lo, band[: hi - lo, :out_w]
            band, band_top = band[done - band_top :], done


def run_tiled(image: np.ndarray, run_tile, tile: tuple[int, int], overlap: int, scale: int,
              feather: bool = True, on_tile=None, multiple: int = 1) -> np.ndarray:
    """The whole output of :func:`iter_tiled_bands` as one (H*s, W*s, C) float32 array."""
    bands = [b for _, b in iter_tiled_bands(image, run_tile, tile, overlap, scale, feather, on_tile, multiple)]
    return np.concatenate(bands, axis=0)
