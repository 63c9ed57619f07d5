"""One quantized Swin block as one op: what :class:`~edgesr.converter.export.graph.ExportableSwinIR` emits as
``edgesr::qswin_block`` and what the native ``edgesr_swin_block`` runs.

A block qualifies when all six linears (q, k, v, proj, fc1, fc2) and both attention matmuls are quantized with
the same bit width; other blocks (a QuantConfig that leaves some layers FP) keep the per-layer ops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgesr.converter.quant import QuantLinear, QuantMatMul

LINEAR_NAMES = ("q", "k", "v", "proj", "fc1", "fc2")


def block_linears(blk: nn.Module) -> list[nn.Module]:
    a, m = blk.attn, blk.mlp
    return [a.q, a.k, a.v, a.proj, m.fc1, m.fc2]


def block_bits(blk: nn.Module) -> int | None:
    """The common bit width when the whole block is quantized, else None."""
    lins = block_linears(blk)
    mms = (blk.attn.qk_matmul, blk.attn.av_matmul)
    if not all(isinstance(v, QuantLinear) for v in lins) or not all(isinstance(v, QuantMatMul) for v in mms):
        return None
    bits = {q.bits for v in lins for q in (v.input_quant, v.weight_quant)}
    bits |= {q.bits for v in mms for q in (v.a_quant, v.b_quant)}
    return bits.pop() if len(bits) == 1 else None


def bounds_of(q) -> tuple[float, float]:
    """A quantizer's learned (lower, upper) bounds as floats."""
    return float(q.lower.detach()), float(q.upper.detach())


@dataclass(frozen=True)
class BlockScalars:
    """The non-tensor arguments of ``edgesr::qswin_block``. bounds: per linear (x_lo, x_hi, w_lo, w_hi) in
    LINEAR_NAMES order (24 floats), then q, k, attention map, v (lower, upper) (8 floats)."""

    height: int
    width: int
    window: int
    shift: int
    heads: int
    q_scale: float
    eps1: float
    eps2: float
    bounds: tuple[float, ...]
    bits: int


def block_scalars(blk: nn.Module, tile: tuple[int, int]) -> BlockScalars:
    bits = block_bits(blk)
    if bits is None:
        raise ValueError("the block is not uniformly quantized")
    bounds: list[float] = []
    for lin in block_linears(blk):
        bounds += [*bounds_of(lin.input_quant), *bounds_of(lin.weight_quant)]
    qk, av = blk.attn.qk_matmul, blk.attn.av_matmul
    bounds += [*bounds_of(qk.a_quant), *bounds_of(qk.b_quant), *bounds_of(av.a_quant), *bounds_of(av.b_quant)]
    return BlockScalars(height=tile[0], width=tile[1], window=blk.window_size, shift=blk.shift,
                        heads=blk.attn.num_heads, q_scale=float(blk.attn.scale), eps1=float(blk.norm1.eps),
                        eps2=float(blk.norm2.eps), bounds=tuple(bounds), bits=bits)


def block_tensors(blk: nn.Module) -> dict[str, torch.Tensor | list[torch.Tensor]]:
    lins = block_linears(blk)
    return {
        "norm1_weight": blk.norm1.weight, "norm1_bias": blk.norm1.bias,
        "norm2_weight": blk.norm2.weight, "norm2_bias": blk.norm2.bias,
        "bias_table": blk.attn.relative_position_bias_table,
        "weights": [v.weight for v in lins], "biases": [v.bias for v in lins],
    }


def native_kwargs(tensors: dict, s: BlockScalars) -> dict:
    """Keyword arguments of :class:`edgesr.native.SwinBlock` from the op's arguments."""

    def np_(t):
        return t.detach().float().cpu().numpy()

    b = s.bounds
    linears = [(np_(w), None if bias is None else np_(bias), b[4 * i : 4 * i + 2], b[4 * i + 2 : 4 * i + 4])
               for i, (w, bias) in enumerate(zip(tensors["weights"], tensors["biases"]))]
    return dict(dim=int(tensors["norm1_weight"].numel()), heads=s.heads, window=s.window, shift=s.shift,
                height=s.height, width=s.width, bits=s.bits, eps1=s.eps1, eps2=s.eps2, q_scale=s.q_scale,
                norm1=(np_(tensors["norm1_weight"]), np_(tensors["norm1_bias"])),
                norm2=(np_(tensors["norm2_weight"]), np_(tensors["norm2_bias"])),
                bias_table=np_(tensors["bias_table"]), linears=linears, attn_bounds=b[24:32])


def block_blob(blk: nn.Module, tile: tuple[int, int]) -> bytes:
    """The delegate blob of one uniformly quantized block (layout: :mod:`.blob`)."""
    from edgesr.converter.export.blob import swin_block_blob

    t, s = block_tensors(blk), block_scalars(blk, tile)
    return swin_block_blob((t["norm1_weight"], t["norm1_bias"]), (t["norm2_weight"], t["norm2_bias"]),
                           t["bias_table"], t["weights"], t["biases"], s.height, s.width, s.window, s.shift,
                           s.heads, s.q_scale, s.eps1, s.eps2, s.bounds, s.bits)
