"""The static-shape forward that every export target traces.

:class:`ExportableSwinIR` wraps an FP or fake-quant :class:`~edgesr.models.SwinIR` (sharing its parameters)
and re-expresses its forward for one LR tile shape with ops that mobile runtimes delegate whole:

* LayerNorm over C of a (B, L, C) tensor is a mean over dims (2, 3) of its (B, L, C, 1) view; XNNPACK has
  no LayerNorm, but takes a 4-D mean over the last two dims. Example, 64×64 tile: (1, 4096, 60) -> view
  (1, 4096, 60, 1) -> mean -> (1, 4096, 1, 1) -> normalized, affine -> (1, 4096, 60).
* Attention runs as 3-D batch matmuls: q of (64 windows, 64 tokens, 60) -> (64, 64, 6, 10) -> permute
  (64, 6, 64, 10) -> (384, 64, 10); Q·Kᵀ gives (384, 64, 64).
* The relative-position bias stays compact: all blocks' (2ws-1)² × heads tables are concatenated into one
  (225, 24 × 6) tensor and gathered once per call to (1, 144, 64, 64); each block slices its 6 heads.
  Constant-folding the gathered bias would store 24 × 6 × 64 × 64 floats (2.4 MB) instead of 130 KB.
* The shifted-window mask is built in the graph from the (nW, N) region labels (16 KB) as
  -100 · min((label_i - label_j)², 1), once per call, instead of a stored (nW, N, N) tensor (1 MB).
* A uniformly quantized Swin block becomes one ``edgesr::qswin_block`` (``fuse_blocks``, the default):
  (1, 4096, 60) tokens in, (1, 4096, 60) out, its LayerNorms, shift, windows, linears, attention and MLP
  inside one native call (:mod:`.swin_block`).
* Otherwise quantized layers become ``edgesr::qlinear`` / ``edgesr::qbmm`` (:mod:`.ops`) with their learned
  bounds as constants; with ``fuse_attention=True`` Q·Kᵀ, bias, mask, softmax and attn·V become one
  ``edgesr::qattention`` when both matmuls are quantized. The rest is plain FP32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgesr.converter.export import ops, swin_block
from edgesr.converter.quant import QuantLinear, QuantMatMul
from edgesr.models.swinir import (
    SwinIR,
    cyclic_shift,
    relative_position_index,
    shifted_window_regions,
    window_partition,
    window_reverse,
)


def _layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    b, n, c = x.shape
    x4 = x.reshape(b, n, c, 1)
    mu = x4.mean(dim=(2, 3), keepdim=True)
    d = x4 - mu
    var = (d * d).mean(dim=(2, 3), keepdim=True)
    y = (d * torch.rsqrt(var + norm.eps)).reshape(b, n, c)
    return y * norm.weight + norm.bias


def _bounds(*quantizers) -> tuple[float, ...]:
    return tuple(v for q in quantizers for v in swin_block.bounds_of(q))


class ExportableSwinIR(nn.Module):
    """(1, 3, H, W) -> (1, 3, sH, sW) for one static LR tile (H, W multiples of the window size); with
    ``dynamic=True`` H and W are read from the input (the tile is only the tracing example) and the shift mask
    is built in the graph, at the cost of the per-layer ops (no whole-block op)."""

    def __init__(self, model: SwinIR, tile: tuple[int, int], fuse_attention: bool = False, fuse_blocks: bool = True,
                 dynamic: bool = False):
        super().__init__()
        self.fuse_attention, self.dynamic = fuse_attention, dynamic
        fuse_blocks = fuse_blocks and not dynamic  # the block op is built for one token grid
        cfg = model.config
        h, w = tile
        ws = cfg.window_size
        if h % ws or w % ws or h <= 0 or w <= 0:
            raise ValueError(f"tile {h}x{w} is not a positive multiple of the window size {ws}")
        self.model, self.tile, self.ws = model, (h, w), ws
        blocks = [blk for layer in model.layers for blk in layer.blocks]
        # Uniformly quantized blocks become one edgesr::qswin_block each (their scalars read once, here).
        self._block_scalars = {}
        if fuse_blocks:
            for blk in blocks:
                if swin_block.block_bits(blk) is not None:
                    self._block_scalars[id(blk)] = swin_block.block_scalars(blk, (h, w))
        # The shared bias gather and shift mask serve the other blocks only (none: no such constants at all).
        unfused = [blk for blk in blocks if id(blk) not in self._block_scalars]
        tables = [b.attn.relative_position_bias_table.detach() for b in unfused]
        self.head_offsets = {id(b): sum(t.shape[1] for t in tables[:i]) for i, b in enumerate(unfused)}
        if unfused:
            self.register_buffer("bias_tables", torch.cat(tables, dim=1))  # (T, sum of heads)
            self.register_buffer("bias_index", relative_position_index(ws).reshape(-1).clone())
            if not dynamic:
                self.register_buffer("regions", shifted_window_regions(h, w, ws, ws // 2).clone())
        # Bounds become graph constants: read them once here, not while tracing.
        self._qbounds = {}
        for mod in model.modules():
            if isinstance(mod, QuantLinear):
                self._qbounds[id(mod)] = _bounds(mod.input_quant, mod.weight_quant)
            elif isinstance(mod, QuantMatMul):
                self._qbounds[id(mod)] = _bounds(mod.a_quant, mod.b_quant)

    def _linear(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(layer, QuantLinear):
            return ops.qlinear(x, layer.weight, layer.bias, *self._qbounds[id(layer)], layer.input_quant.bits)
        return F.linear(x, layer.weight, layer.bias)

    def _bmm(self, layer: nn.Module, a: torch.Tensor, b: torch.Tensor, b_transposed: bool) -> torch.Tensor:
        if isinstance(layer, QuantMatMul):
            return ops.qbmm(a, b, *self._qbounds[id(layer)], layer.a_quant.bits, b_transposed)
        return torch.bmm(a, b.transpose(1, 2) if b_transposed else b)

    def _regions(self, h, w) -> torch.Tensor:
        """(nW, N) region labels of the shifted grid: a buffer for a static tile; for a dynamic one computed in
        the graph from h, w (rows [0, h - ws), [h - ws, h - ws/2), [h - ws/2, h), the same for columns)."""
        if not self.dynamic:
            return self.regions
        ws, shift = self.ws, self.ws // 2

        def region(size):
            r = torch.arange(size)
            return (r >= size - ws).to(torch.float32) + (r >= size - shift).to(torch.float32)

        label = region(h)[:, None] * 3.0 + region(w)[None, :]
        return window_partition(label.reshape(1, h, w, 1), ws)[..., 0]  # not squeeze: no If node in ONNX

    def _shift_mask(self, h, w) -> torch.Tensor:
        regions = self._regions(h, w)
        d = regions.unsqueeze(1) - regions.unsqueeze(2)  # (nW, N, N)
        return torch.clamp(d * d, max=1.0) * -100.0

    def _attention(self, blk, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attn_mod = blk.attn
        bw, n, c = x.shape
        heads = attn_mod.num_heads
        hd = c // heads

        def split(t: torch.Tensor) -> torch.Tensor:  # (Bw, N, C) -> (Bw*h, N, hd)
            return t.reshape(bw, n, heads, hd).permute(0, 2, 1, 3).reshape(bw * heads, n, hd)

        q = split(self._linear(attn_mod.q, x)) * attn_mod.scale
        k = split(self._linear(attn_mod.k, x))
        v = split(self._linear(attn_mod.v, x))
        qk, av = attn_mod.qk_matmul, attn_mod.av_matmul
        if self.fuse_attention and isinstance(qk, QuantMatMul) and isinstance(av, QuantMatMul):
            bounds = [*self._qbounds[id(qk)], *self._qbounds[id(av)]]
            out = ops.qattention(q, k, v, bias.reshape(heads, n, n), mask, heads, bounds, qk.a_quant.bits)
            out = out.reshape(bw, heads, n, hd).permute(0, 2, 1, 3).reshape(bw, n, c)
            return self._linear(attn_mod.proj, out)
        attn = self._bmm(qk, q, k, b_transposed=True).reshape(bw, heads, n, n) + bias
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.reshape(bw // nw, nw, heads, n, n) + mask.reshape(1, nw, 1, n, n)
        attn = attn.reshape(bw * heads, n, n).softmax(dim=-1)
        out = self._bmm(av, attn, v, b_transposed=False)
        out = out.reshape(bw, heads, n, hd).permute(0, 2, 1, 3).reshape(bw, n, c)
        return self._linear(attn_mod.proj, out)

    def _block(self, blk, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor, hw) -> torch.Tensor:
        h, w = hw
        b, _, c = x.shape
        y = _layer_norm(x, blk.norm1).reshape(b, h, w, c)
        if blk.shift:
            y = cyclic_shift(y, -blk.shift)
        y = self._attention(blk, window_partition(y, self.ws), bias, mask if blk.shift else None)
        y = window_reverse(y, self.ws, h, w)
        if blk.shift:
            y = cyclic_shift(y, blk.shift)
        x = x + y.reshape(b, h * w, c)
        hid = F.gelu(self._linear(blk.mlp.fc1, _layer_norm(x, blk.norm2)))
        return x + self._linear(blk.mlp.fc2, hid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, cfg = self.model, self.model.config
        h, w = (x.shape[2], x.shape[3]) if self.dynamic else self.tile
        n = self.ws * self.ws
        biases = mask = None
        if self.head_offsets:
            # One gather for all blocks: (N*N, sum of heads) -> (1, sum of heads, N, N); each block slices its heads.
            biases = self.bias_tables.index_select(0, self.bias_index).permute(1, 0).reshape(1, -1, n, n)
            mask = self._shift_mask(h, w)
        mean = m.mean.to(x.dtype)
        x = (x - mean) * cfg.img_range
        x = m.conv_first(x)
        b, c = x.shape[:2]
        y = _layer_norm(x.flatten(2).transpose(1, 2), m.patch_norm)
        for layer in m.layers:
            z = y
            for blk in layer.blocks:
                scalars = self._block_scalars.get(id(blk))
                if scalars is not None:
                    z = ops.qswin_block(z, **swin_block.block_tensors(blk), **vars(scalars))
                else:
                    o = self.head_offsets[id(blk)]
                    z = self._block(blk, z, biases[:, o : o + blk.attn.num_heads], mask, (h, w))
            z = layer.conv(z.transpose(1, 2).reshape(b, c, h, w))
            y = z.flatten(2).transpose(1, 2) + y
        y = _layer_norm(y, m.norm).transpose(1, 2).reshape(b, c, h, w)
        x = m.conv_after_body(y) + x
        x = m.upsample(x)
        return x / cfg.img_range + mean
