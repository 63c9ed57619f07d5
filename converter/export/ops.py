"""Custom ops that mark 2DQuant's integer layers in exported graphs.

``edgesr::qlinear(x, weight, bias, x_lower, x_upper, w_lower, w_upper, bits)`` and
``edgesr::qbmm(a, b, a_lower, a_upper, b_lower, b_upper, bits, b_transposed)``. Their PyTorch implementation is
the fake-quant arithmetic, so an exported graph evaluated eagerly equals the fake-quant model; deployment
backends (the ExecuTorch delegate, the LiteRT delegate) replace them with the native integer kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgesr.converter.quant import fake_quantize
from edgesr.models.swinir import relative_position_index, shifted_window_mask, window_partition, window_reverse


def _fq(v: torch.Tensor, lower: float, upper: float, bits: int) -> torch.Tensor:
    return fake_quantize(v, torch.tensor(lower, dtype=v.dtype), torch.tensor(upper, dtype=v.dtype), bits)


@torch.library.custom_op("edgesr::qlinear", mutates_args=())
def qlinear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, x_lower: float, x_upper: float,
            w_lower: float, w_upper: float, bits: int) -> torch.Tensor:
    return F.linear(_fq(x, x_lower, x_upper, bits), _fq(weight, w_lower, w_upper, bits), bias)


@qlinear.register_fake
def _(x, weight, bias, x_lower, x_upper, w_lower, w_upper, bits):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


@torch.library.custom_op("edgesr::qbmm", mutates_args=())
def qbmm(a: torch.Tensor, b: torch.Tensor, a_lower: float, a_upper: float, b_lower: float, b_upper: float,
         bits: int, b_transposed: bool) -> torch.Tensor:
    """(B, M, K) @ (B, K, N), or @ (B, N, K)ᵀ when ``b_transposed``, both operands quantized per tensor."""
    bq = _fq(b, b_lower, b_upper, bits)
    return torch.bmm(_fq(a, a_lower, a_upper, bits), bq.transpose(1, 2) if b_transposed else bq)


@qbmm.register_fake
def _(a, b, a_lower, a_upper, b_lower, b_upper, bits, b_transposed):
    n = b.shape[1] if b_transposed else b.shape[2]
    return a.new_empty((a.shape[0], a.shape[1], n))


@torch.library.custom_op("edgesr::qattention", mutates_args=())
def qattention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None,
               heads: int, bounds: list[float], bits: int) -> torch.Tensor:
    """Window attention with 2DQuant's four quantized operands, fused (what ``WindowAttention`` computes).

    q, k, v: (windows * heads, N, hd), q already scaled; bias: (heads, N, N); mask: (nW, N, N) or None;
    bounds: q, k, attention map, v as (lower, upper) pairs. Returns (windows * heads, N, hd).
    Example, 64x64 tile: q (384, 64, 10) -> map (64, 6, 64, 64) + bias (6, 64, 64) + mask (64, 1, 64, 64).
    """
    g, n = q.shape[0] // heads, q.shape[1]
    ql, qu, kl, ku, al, au, vl, vu = bounds
    attn = torch.bmm(_fq(q, ql, qu, bits), _fq(k, kl, ku, bits).transpose(1, 2)).reshape(g, heads, n, n) + bias
    if mask is not None:
        nw = mask.shape[0]
        attn = attn.reshape(g // nw, nw, heads, n, n) + mask.reshape(1, nw, 1, n, n)
    attn = attn.reshape(g * heads, n, n).softmax(dim=-1)
    return torch.bmm(_fq(attn, al, au, bits), _fq(v, vl, vu, bits))


@qattention.register_fake
def _(q, k, v, bias, mask, heads, bounds, bits):
    return torch.empty_like(v)


@torch.library.custom_op("edgesr::qswin_block", mutates_args=())
def qswin_block(x: torch.Tensor, norm1_weight: torch.Tensor, norm1_bias: torch.Tensor, norm2_weight: torch.Tensor,
                norm2_bias: torch.Tensor, bias_table: torch.Tensor, weights: list[torch.Tensor],
                biases: list[torch.Tensor], height: int, width: int, window: int, shift: int, heads: int,
                q_scale: float, eps1: float, eps2: float, bounds: list[float], bits: int) -> torch.Tensor:
    """A whole 2DQuant Swin block (what ``edgesr_swin_block_run`` computes) on (B, height * width, C) tokens.

    weights / biases: q, k, v, proj, fc1, fc2; bounds: per linear (x_lo, x_hi, w_lo, w_hi), then q, k,
    attention map, v (lower, upper) (32 floats; see :mod:`.swin_block`). Example, 64x64 tile, SwinIR-light:
    x (1, 4096, 60) -> windows (64, 64, 60) -> q (384, 64, 10) ... -> (1, 4096, 60).
    """
    b, t, c = x.shape
    n, hd = window * window, c // heads

    def linear(i: int, v: torch.Tensor) -> torch.Tensor:
        xl, xu, wl, wu = bounds[4 * i : 4 * i + 4]
        return F.linear(_fq(v, xl, xu, bits), _fq(weights[i], wl, wu, bits), biases[i])

    y = F.layer_norm(x, (c,), norm1_weight, norm1_bias, eps1).reshape(b, height, width, c)
    if shift:
        y = torch.roll(y, (-shift, -shift), (1, 2))
    win = window_partition(y, window)
    bw = win.shape[0]

    def split(v: torch.Tensor) -> torch.Tensor:  # (Bw, N, C) -> (Bw*heads, N, hd)
        return v.reshape(bw, n, heads, hd).permute(0, 2, 1, 3).reshape(bw * heads, n, hd)

    q = split(linear(0, win)) * q_scale
    bias = bias_table[relative_position_index(window).reshape(-1)].reshape(n, n, heads).permute(2, 0, 1)
    mask = shifted_window_mask(height, width, window, shift).to(x.dtype) if shift else None
    o = qattention(q, split(linear(1, win)), split(linear(2, win)), bias.contiguous(), mask, heads,
                   list(bounds[24:32]), bits)
    o = linear(3, o.reshape(bw, heads, n, hd).permute(0, 2, 1, 3).reshape(bw, n, c))
    o = window_reverse(o, window, height, width)
    if shift:
        o = torch.roll(o, (shift, shift), (1, 2))
    x = x + o.reshape(b, t, c)
    return x + linear(5, F.gelu(linear(4, F.layer_norm(x, (c,), norm2_weight, norm2_bias, eps2))))


@qswin_block.register_fake
def _(x, norm1_weight, norm1_bias, norm2_weight, norm2_bias, bias_table, weights, biases, height, width, window,
      shift, heads, q_scale, eps1, eps2, bounds, bits):
    return torch.empty_like(x)


QUANT_OPS = ("edgesr::qlinear", "edgesr::qbmm", "edgesr::qattention", "edgesr::qswin_block")
