"""SwinIR-light -> .tflite, written op by op (:mod:`.builder`) for one static LR tile, NHWC.

The graph mirrors :class:`~edgesr.converter.export.graph.ExportableSwinIR` with TFLite builtins, rank <= 4
everywhere and no Flex op. One concrete shape, SwinIR-light on a 64×64 tile (4096 tokens, C = 60, window 8):

* input (1, 64, 64, 3) -> SUB mean, MUL img_range -> CONV_2D (OHWI weights, SAME) -> (1, 64, 64, 60), which
  RESHAPEs to the (4096, 60) token matrix for free: NHWC is already token-major.
* LayerNorm on (4096, 60): MEAN over axis 1 -> SUB -> MUL, MEAN -> ADD eps -> RSQRT -> MUL -> MUL γ -> ADD β.
* Swin block: the cyclic shift is SLICE + CONCATENATION per axis and the window partition RESHAPE (8, 8, 8,
  480) -> TRANSPOSE (0, 2, 1, 3) -> RESHAPE (4096, 60) (window-major tokens); q, k, v are FULLY_CONNECTED (4096, 60) -> RESHAPE (64, 64, 6, 10) -> TRANSPOSE
  (64, 6, 64, 10); BATCH_MATMUL(q, k, adj_y) -> (64, 6, 64, 64) + position bias + shift mask -> SOFTMAX ->
  BATCH_MATMUL(·, v) -> TRANSPOSE, RESHAPE (4096, 60) -> proj -> window reverse, roll back -> +x.
* The position bias stays compact: each block stores its (225, 6) table and GATHERs it to (1, 6, 64, 64) in the
  graph (5.4 KB per block instead of 98 KB); the shift mask is built once from (64, 64) region labels (16 KB).
  These input-independent ops come first, so XNNPACK (which has no GATHER) takes the rest as one partition.
* Upsampler: CONV_2D to 3·r² channels, permuted so that DEPTH_TO_SPACE (depth index (i·r + j)·3 + c) equals
  PixelShuffle (channel c·r² + i·r + j) -> (1, 256, 256, 3) -> DIV img_range -> ADD mean.

edgesr INT4: a uniformly quantized block becomes one CUSTOM ``EDGESR_SWIN_BLOCK`` op, (4096, 60) -> (4096, 60),
whose custom options are the delegate blob of :mod:`edgesr.converter.export.blob` (22,672 bytes for a 4-bit
SwinIR-light block); the edgesr LiteRT delegate (``runtime/``) runs it with the native kernels. In a block the
QuantConfig quantizes only in part, each quantized linear becomes ``EDGESR_QLINEAR`` (its packed codes, bias and
bounds as options) and each quantized attention matmul ``EDGESR_QBMM`` (4D operands, e.g. (64, 6, 64, 10) ×
(64, 6, 64, 10)ᵀ); its other ops, and blocks left FP, keep the builtins above. The model descriptor travels as metadata ``edgesr_metadata``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from ai_edge_litert import schema_py_generated as fb

from edgesr.converter.export import swin_block
from edgesr.converter.export.blob import bmm_blob, linear_blob
from edgesr.converter.export.descriptor import descriptor
from edgesr.converter.export.files import write_atomic
from edgesr.converter.export.tflite.builder import Graph, op_names
from edgesr.converter.quant import QuantLinear, QuantMatMul
from edgesr.errors import EdgesrError
from edgesr.models.swinir import SwinIR, relative_position_index, shifted_window_regions
from edgesr.runtime.litert import METADATA_KEY

SWIN_BLOCK_OP, LINEAR_OP, BMM_OP = "EDGESR_SWIN_BLOCK", "EDGESR_QLINEAR", "EDGESR_QBMM"
B = fb.BuiltinOperator


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


class _Lowering:
    def __init__(self, model: SwinIR, tile: tuple[int, int]):
        self.g, self.model, self.cfg = Graph(), model, model.config
        self.h, self.w = tile
        self.ws, self.c = self.cfg.window_size, self.cfg.embed_dim
        self.n = self.ws * self.ws
        self.nw = (self.h // self.ws) * (self.w // self.ws)
        self._perm: dict[int, tuple[int, int]] = {}
        self._mask: int | None = None
        self._bias: dict[int, int] = {}
        self.custom_ops: Counter = Counter()

    # -- op helpers: each returns the output tensor index ---------------------------------------------------------
    def new(self, shape) -> int:
        return self.g.tensor(shape)

    def shape(self, t: int) -> list[int]:
        return list(self.g.tensors[t].shape)

    def binary(self, code: int, a: int, b: int) -> int:
        out = self.new(np.broadcast_shapes(tuple(self.shape(a)), tuple(self.shape(b))))
        options = {B.ADD: fb.AddOptionsT, B.SUB: fb.SubOptionsT, B.MUL: fb.MulOptionsT, B.DIV: fb.DivOptionsT,
                   B.MINIMUM: None}[code]
        self.g.op(code, [a, b], [out], options() if options else None)
        return out

    def scalar(self, code: int, a: int, value: float) -> int:
        return self.binary(code, a, self.g.const(np.float32(value).reshape(1)))

    def reshape(self, x: int, shape) -> int:
        shape = [int(v) for v in shape]
        out = self.new(shape)
        opts = fb.ReshapeOptionsT()
        opts.newShape = shape
        self.g.op(B.RESHAPE, [x, self.g.const(np.array(shape, np.int32))], [out], opts)
        return out

    def transpose(self, x: int, perm) -> int:
        out = self.new([self.shape(x)[p] for p in perm])
        self.g.op(B.TRANSPOSE, [x, self.g.const(np.array(perm, np.int32))], [out], fb.TransposeOptionsT())
        return out

    def gather(self, x: int, index: np.ndarray) -> int:
        out = self.new([len(index), *self.shape(x)[1:]])
        opts = fb.GatherOptionsT()
        opts.axis = 0
        self.g.op(B.GATHER, [x, self.g.const(index.astype(np.int32))], [out], opts)
        return out

    def mean_last(self, x: int) -> int:
        out = self.new([*self.shape(x)[:-1], 1])
        opts = fb.ReducerOptionsT()
        opts.keepDims = True
        self.g.op(B.MEAN, [x, self.g.const(np.array([len(self.shape(x)) - 1], np.int32))], [out], opts)
        return out

    def unary(self, code: int, x: int, options=None) -> int:
        out = self.new(self.shape(x))
        self.g.op(code, [x], [out], options)
        return out

    def layer_norm(self, x: int, norm) -> int:
        mu = self.mean_last(x)
        d = self.binary(B.SUB, x, mu)
        var = self.mean_last(self.binary(B.MUL, d, d))
        r = self.unary(B.RSQRT, self.scalar(B.ADD, var, norm.eps))
        y = self.binary(B.MUL, self.binary(B.MUL, d, r), self.g.const(_np(norm.weight)))
        return self.binary(B.ADD, y, self.g.const(_np(norm.bias)))

    def fc(self, x: int, layer) -> int:
        weight = layer.weight
        out = self.new([self.shape(x)[0], weight.shape[0]])
        if isinstance(layer, QuantLinear):
            xq, wq = layer.input_quant, layer.weight_quant
            blob = linear_blob(weight, layer.bias, swin_block.bounds_of(xq), swin_block.bounds_of(wq), xq.bits)
            self.g.custom(LINEAR_OP, [x], [out], blob)
            self.custom_ops[LINEAR_OP] += 1
            return out
        inputs = [x, self.g.const(_np(weight))]
        inputs.append(self.g.const(_np(layer.bias)) if layer.bias is not None else -1)
        self.g.op(B.FULLY_CONNECTED, inputs, [out], fb.FullyConnectedOptionsT())
        return out

    def conv(self, x: int, conv: torch.nn.Conv2d, out_perm: np.ndarray | None = None) -> int:
        k = conv.kernel_size[0]
        if conv.kernel_size != (k, k) or conv.stride != (1, 1) or conv.padding != (k // 2, k // 2) or conv.groups != 1:
            raise EdgesrError(f"cannot lower {conv}: only stride-1 'same' convs are supported")
        w = _np(conv.weight).transpose(0, 2, 3, 1)  # OIHW -> OHWI
        b = _np(conv.bias)
        if out_perm is not None:
            w, b = w[out_perm], b[out_perm]
        n, hh, ww, _ = self.shape(x)
        out = self.new([n, hh, ww, w.shape[0]])
        opts = fb.Conv2DOptionsT()
        opts.padding, opts.strideH, opts.strideW = fb.Padding.SAME, 1, 1
        opts.dilationHFactor = opts.dilationWFactor = 1
        self.g.op(B.CONV_2D, [x, self.g.const(w), self.g.const(b)], [out], opts)
        return out

    def batch_matmul(self, a: int, b: int, adj_y: bool, layer=None) -> int:
        sa, sb = self.shape(a), self.shape(b)
        out = self.new([*sa[:-1], sb[-2] if adj_y else sb[-1]])
        if isinstance(layer, QuantMatMul):
            blob = bmm_blob(swin_block.bounds_of(layer.a_quant), swin_block.bounds_of(layer.b_quant), layer.a_quant.bits, adj_y)
            self.g.custom(BMM_OP, [a, b], [out], blob)
            self.custom_ops[BMM_OP] += 1
            return out
        opts = fb.BatchMatMulOptionsT()
        opts.adjX, opts.adjY = False, adj_y
        self.g.op(B.BATCH_MATMUL, [a, b], [out], opts)
        return out

    # -- SwinIR pieces ------------------------------------------------------------------------------------------
    def shift_mask(self) -> int:
        """(nW, 1, N, N): -100 where two tokens of a shifted window come from different regions; built once."""
        if self._mask is None:
            regions = self.g.const(_np(shifted_window_regions(self.h, self.w, self.ws, self.ws // 2)))
            rows = self.reshape(regions, [self.nw, 1, self.n])
            cols = self.reshape(regions, [self.nw, self.n, 1])
            d = self.binary(B.SUB, rows, cols)
            d = self.binary(B.MINIMUM, self.binary(B.MUL, d, d), self.g.const(np.float32(1.0).reshape(1)))
            self._mask = self.reshape(self.scalar(B.MUL, d, -100.0), [self.nw, 1, self.n, self.n])
        return self._mask

    def position_bias(self, blk) -> int:
        """(1, heads, N, N) from the block's ((2ws-1)², heads) table: GATHER, TRANSPOSE, RESHAPE."""
        heads = blk.attn.num_heads
        table = self.g.const(_np(blk.attn.relative_position_bias_table))
        bias = self.gather(table, relative_position_index(self.ws).reshape(-1).numpy())  # (N·N, heads)
        return self.reshape(self.transpose(bias, [1, 0]), [1, heads, self.n, self.n])

    def attention(self, blk, x: int) -> int:
        attn = blk.attn
        heads = attn.num_heads
        hd = self.c // heads

        def split(t: int) -> int:  # (nW·N, C) -> (nW, heads, N, hd)
            return self.transpose(self.reshape(t, [self.nw, self.n, heads, hd]), [0, 2, 1, 3])

        q = split(self.scalar(B.MUL, self.fc(x, attn.q), float(attn.scale)))
        k, v = split(self.fc(x, attn.k)), split(self.fc(x, attn.v))
        scores = self.batch_matmul(q, k, adj_y=True, layer=attn.qk_matmul)  # (nW, heads, N, N)
        scores = self.binary(B.ADD, scores, self._bias[id(blk)])
        if blk.shift:
            scores = self.binary(B.ADD, scores, self.shift_mask())
        opts = fb.SoftmaxOptionsT()
        opts.beta = 1.0
        probs = self.unary(B.SOFTMAX, scores, opts)
        out = self.transpose(self.batch_matmul(probs, v, adj_y=False, layer=attn.av_matmul), [0, 2, 1, 3])
        return self.fc(self.reshape(out, [self.nw * self.n, self.c]), attn.proj)

    def roll(self, x: int, shift: int) -> int:
        """torch.roll(x, (shift, shift), dims=(1, 2)) of (1, h, w, C) as SLICE + CONCATENATION per axis."""
        for axis in (1, 2):
            shape = self.shape(x)
            size = shape[axis]
            cut = (-shift) % size
            if cut == 0:
                continue
            parts = []
            for begin, length in ((cut, size - cut), (0, cut)):
                b, sz = [0, 0, 0, 0], list(shape)
                b[axis], sz[axis] = begin, length
                part = self.new(sz)
                self.g.op(B.SLICE, [x, self.g.const(np.array(b, np.int32)), self.g.const(np.array(sz, np.int32))],
                          [part], fb.SliceOptionsT())
                parts.append(part)
            out = self.new(shape)
            opts = fb.ConcatenationOptionsT()
            opts.axis = axis
            self.g.op(B.CONCATENATION, parts, [out], opts)
            x = out
        return x

    def to_windows(self, x: int, shift: int) -> int:
        """(h·w, C) tokens -> (nW·N, C) in (shifted) window order: (1, h, w, C) rolled by -shift -> RESHAPE
        (h/ws, ws, w/ws, ws·C) -> TRANSPOSE (0, 2, 1, 3) -> RESHAPE (nW·N, C)."""
        h, w, ws, c = self.h, self.w, self.ws, self.c
        x = self.roll(self.reshape(x, [1, h, w, c]), -shift)
        x = self.transpose(self.reshape(x, [h // ws, ws, w // ws, ws * c]), [0, 2, 1, 3])
        return self.reshape(x, [self.nw * self.n, c])

    def from_windows(self, x: int, shift: int) -> int:
        """The inverse of :meth:`to_windows`."""
        h, w, ws, c = self.h, self.w, self.ws, self.c
        x = self.transpose(self.reshape(x, [h // ws, w // ws, ws, ws * c]), [0, 2, 1, 3])
        x = self.roll(self.reshape(x, [1, h, w, c]), shift)
        return self.reshape(x, [h * w, c])

    def fp_block(self, blk, x: int) -> int:
        y = self.to_windows(self.layer_norm(x, blk.norm1), blk.shift)
        x = self.binary(B.ADD, x, self.from_windows(self.attention(blk, y), blk.shift))
        opts = fb.GeluOptionsT()
        opts.approximate = False
        hid = self.unary(B.GELU, self.fc(self.layer_norm(x, blk.norm2), blk.mlp.fc1), opts)
        return self.binary(B.ADD, x, self.fc(hid, blk.mlp.fc2))

    def block(self, blk, x: int) -> int:
        if swin_block.block_bits(blk) is not None:
            out = self.new(self.shape(x))
            self.g.custom(SWIN_BLOCK_OP, [x], [out], swin_block.block_blob(blk, (self.h, self.w)))
            self.custom_ops[SWIN_BLOCK_OP] += 1
            return out
        return self.fp_block(blk, x)  # FP, or quantized in part: its quantized layers become custom ops

    def build(self) -> tuple[int, int]:
        m, cfg, g = self.model, self.cfg, self.g
        r = cfg.scale
        lr = g.tensor([1, self.h, self.w, cfg.in_chans], name="lr")
        # Input-independent tensors first (XNNPACK has no GATHER): the rest then forms one delegate partition.
        for layer in m.layers:
            for blk in layer.blocks:
                if swin_block.block_bits(blk) is None:
                    self._bias[id(blk)] = self.position_bias(blk)
                    if blk.shift:
                        self.shift_mask()
        mean = _np(m.mean).reshape(1, 1, 1, -1)
        x = self.scalar(B.MUL, self.binary(B.SUB, lr, g.const(mean)), float(cfg.img_range))
        feat = self.conv(x, m.conv_first)  # (1, h, w, C)
        tokens = self.h * self.w
        y = self.layer_norm(self.reshape(feat, [tokens, self.c]), m.patch_norm)
        for layer in m.layers:
            z = y
            for blk in layer.blocks:
                z = self.block(blk, z)
            z = self.conv(self.reshape(z, [1, self.h, self.w, self.c]), layer.conv)
            y = self.binary(B.ADD, self.reshape(z, [tokens, self.c]), y)
        y = self.reshape(self.layer_norm(y, m.norm), [1, self.h, self.w, self.c])
        x = self.binary(B.ADD, self.conv(y, m.conv_after_body), feat)
        conv_up, _shuffle = m.upsample
        cin = cfg.in_chans
        depth = np.arange(cin * r * r)
        perm = (depth % cin) * r * r + depth // cin  # DEPTH_TO_SPACE depth d = k·cin + c <- torch channel c·r² + k
        x = self.conv(x, conv_up, perm)
        sr = self.new([1, self.h * r, self.w * r, cin])
        opts = fb.DepthToSpaceOptionsT()
        opts.blockSize = r
        g.op(B.DEPTH_TO_SPACE, [x], [sr], opts)
        sr = self.scalar(B.DIV, sr, float(cfg.img_range))
        sr = self.binary(B.ADD, sr, g.const(mean))
        g.tensors[sr].name = "sr"
        return lr, sr


def lower_tflite(model: SwinIR, tile: tuple[int, int], meta: dict) -> tuple[bytes, dict[str, int]]:
    """The .tflite bytes of ``model`` (FP or fake-quant) at ``tile``, and its custom ops by name."""
    h, w = tile
    ws = model.config.window_size
    if h <= 0 or w <= 0 or h % ws or w % ws:
        raise EdgesrError(f"tile {h}x{w} is not a positive multiple of the window size {ws}")
    low = _Lowering(model.eval(), tile)
    with torch.no_grad():
        lr, sr = low.build()
    custom = dict(sorted(low.custom_ops.items()))
    meta = {**meta, "layout": "NHWC", "custom_ops": custom}
    data = low.g.serialize([lr], [sr], {METADATA_KEY: json.dumps(meta, sort_keys=True).encode()},
                           description="edgesr SwinIR-light")
    return data, custom


def export_tflite(model: SwinIR, out: str | Path, tile: tuple[int, int] = (64, 64), source: dict | None = None,
                  stock_int4: bool = False, stock_int8_convs: bool = False) -> dict:
    """Write ``model`` as a .tflite for one static LR tile (NHWC in and out); writes atomically.

    FP model: builtin FP32 ops; with ``stock_int4`` LiteRT's own per-channel symmetric INT4 fully-connected
    weights with dynamic activations (:mod:`.stock`, optionally INT8 convs), runnable by a stock interpreter.
    Fake-quant model: the edgesr INT4 file, its quantized blocks as ``EDGESR_SWIN_BLOCK`` custom ops."""
    t0 = time.perf_counter()
    quantized = getattr(model, "quant_config", None) is not None
    if (stock_int4 or stock_int8_convs) and quantized:
        raise EdgesrError("the stock INT4 profile quantizes an FP model; a 2DQuant model exports as edgesr INT4")
    if stock_int8_convs and not stock_int4:
        raise EdgesrError("--stock-int8-convs goes with --stock-int4")
    meta = descriptor(model, tile, "tflite")
    meta["source"] = source or {}
    stock = None
    if stock_int4:
        from edgesr.converter.export.tflite.stock import stock_recipe

        stock = stock_recipe(int8_convs=stock_int8_convs)
    meta["stock_int4"] = stock
    data, custom = lower_tflite(model, tile, meta)
    if stock_int4:
        from edgesr.converter.export.tflite.stock import quantize_stock

        data = quantize_stock(data, int8_convs=stock_int8_convs)
    out = write_atomic(out, lambda f: f.write(data))
    ops = Counter(op_names(data))
    return {"path": str(out), "bytes": out.stat().st_size, "ops": dict(sorted(ops.items())), "custom_ops": custom,
            "stock_int4": stock, "seconds": round(time.perf_counter() - t0, 1), "tile": list(tile),
            "quantized": quantized}
