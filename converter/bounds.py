"""Bound initialisation: MinMax, Percentile and DOBI (distribution-oriented bound initialisation).

DOBI picks, for each quantizer alone, the (l, u) among K candidates that minimises the MSE between the tensor
and its fake-quantized version:

* symmetric shrink (bell-shaped tensors: weights, Q, K, V, LayerNorm outputs): candidate i is
  (min + i*d, max - i*d) with d = (max - min) / (2K), i = 0..K-1;
* one-sided search (post-softmax and post-GELU inputs, whose mass sits at the lower end): l = min fixed,
  u = max - i*d with d = (max - min) / K, so the search covers the whole range.

Candidate 0 is MinMax, so DOBI is never worse than MinMax on its own objective; ties keep the first (widest).
Tensors over ``EXACT_LIMIT`` elements (attention maps reach 50 M) are scored on a 16384-bin histogram
between their exact min and max: the objective then weights each bin centre by its count.
"""

from __future__ import annotations

import numpy as np
import torch

EXACT_LIMIT = 1 << 18
HIST_BINS = 1 << 14


def _candidates(mn: float, mx: float, k: int, one_sided: bool) -> tuple[torch.Tensor, torch.Tensor]:
    i = torch.arange(k, dtype=torch.float64)
    if one_sided:
        d = (mx - mn) / k
        return torch.full((k,), mn, dtype=torch.float64), mx - i * d
    d = (mx - mn) / (2 * k)
    return mn + i * d, mx - i * d


def _quant_mse(values: torch.Tensor, weights: torch.Tensor | None, lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
    """MSE of fake quantization for each candidate (lo[i], hi[i]); values (M,), result (K,)."""
    levels = 2**bits - 1
    out = torch.empty(lo.shape[0], dtype=torch.float64)
    chunk = max(1, (1 << 22) // max(1, values.numel()))
    for s in range(0, lo.shape[0], chunk):
        l, h = lo[s : s + chunk, None], hi[s : s + chunk, None]
        step = (h - l) / levels
        vc = torch.minimum(torch.maximum(values[None, :], l), h)
        q = torch.round((vc - l) / step) * step + l
        err = (q - values[None, :]) ** 2
        out[s : s + chunk] = (err * weights).sum(1) / weights.sum() if weights is not None else err.mean(1)
    return out


def dobi(x: torch.Tensor, bits: int, k: int = 100, one_sided: bool = False) -> dict:
    """DOBI search on one tensor; returns lower, upper, mse, minmax_mse, candidate index and mode."""
    flat = x.detach().reshape(-1).float()
    mn, mx = float(flat.min()), float(flat.max())
    if mx <= mn:
        return {"lower": mn, "upper": mn + 1e-8, "mse": 0.0, "minmax_mse": 0.0, "index": 0, "one_sided": one_sided}
    if flat.numel() > EXACT_LIMIT:
        counts = torch.histc(flat, bins=HIST_BINS, min=mn, max=mx).double()
        width = (mx - mn) / HIST_BINS
        centres = mn + width * (torch.arange(HIST_BINS, dtype=torch.float64) + 0.5)
        keep = counts > 0
        values, weights = centres[keep], counts[keep]
    else:
        values, weights = flat.double(), None
    lo, hi = _candidates(mn, mx, k, one_sided)
    mse = _quant_mse(values, weights, lo, hi, bits)
    best = int(torch.argmin(mse))  # first minimum: ties keep the wider range
    return {
        "lower": float(lo[best]),
        "upper": float(hi[best]),
        "mse": float(mse[best]),
        "minmax_mse": float(mse[0]),
        "index": best,
        "one_sided": one_sided,
    }


def minmax(x: torch.Tensor) -> dict:
    return {"lower": float(x.min()), "upper": float(x.max())}


def percentile(x: torch.Tensor, p: float) -> dict:
    flat = x.detach().reshape(-1).float().numpy()
    lo, hi = np.percentile(flat, [100.0 - p, p])
    return {"lower": float(lo), "upper": float(hi)}
