"""The bytes one quantized op carries into a delegate: written here, parsed by the native library
(``edgesr_swin_block_from_blob`` in native/src/ek_blob.c) or the ExecuTorch backend, whichever runs the op. The
ExecuTorch delegate stores them as its processed blob, the LiteRT one as the CUSTOM op's options.

Blob layout (little-endian; floats are IEEE binary32):

    0   char[4]  magic "EQ4D"
    4   u32      version (1)
    8   u32      op: 1 = linear, 2 = batch matmul, 3 = fused window attention, 4 = whole Swin block
    12  u32      bits
    linear:  16 u32 N, 20 u32 K, 24 u32 has_bias, 28 f32 x_lower, x_upper, w_lower, w_upper,
             44 u32 packed byte count P, 48 P bytes of weight codes (N x K row-major, bit-packed as in
             ``edgesr.converter.pack``), then N f32 of bias when has_bias
    bmm:     16 u32 b_transposed, 20 f32 a_lower, a_upper, b_lower, b_upper
    attention: 16 u32 heads, 20 u32 has_mask, 24 f32 x 8: (lower, upper) of q, k, attention map, v
             (runtime inputs q, k, v, bias[, mask]; see ``edgesr_qattention`` in native/include)
    swin block: 16 u32 x 7: dim C, heads, window, shift, hidden F, height, width; 44 f32 x 3: eps1, eps2,
             q_scale; 56 f32 x 32: bounds (as ``edgesr::qswin_block``); 184 f32: norm1 weight, bias, norm2
             weight, bias (C each), the relative-position table ((2 window - 1)^2 x heads); then per linear
             (q, k, v, proj, fc1, fc2): u32 packed byte count P, P bytes of codes, u32 has_bias, N f32 of bias
             (runtime input: the (1, height * width, C) tokens; see ``edgesr_swin_block_create``)

Example, a 4-bit q projection of SwinIR-light (N = K = 60): 48 + 1800 + 240 = 2088 bytes; a whole 4-bit
SwinIR-light block: 184 + 960 + 5400 + 14400 (codes) + 1680 (biases) + 48 = 22,672 bytes.
"""

from __future__ import annotations

import struct

import torch

from edgesr.converter.pack import pack_codes
from edgesr.converter.quant import quant_codes

MAGIC, VERSION, OP_LINEAR, OP_BMM, OP_ATTENTION, OP_SWIN_BLOCK = b"EQ4D", 1, 1, 2, 3, 4


def linear_blob(weight: torch.Tensor, bias: torch.Tensor | None, x_bounds, w_bounds, bits: int) -> bytes:
    n, k = weight.shape
    codes = quant_codes(weight.detach().float(), torch.tensor(w_bounds[0]), torch.tensor(w_bounds[1]), bits)
    packed = pack_codes(codes.numpy(), bits).tobytes()
    head = struct.pack("<4sIIIIII4fI", MAGIC, VERSION, OP_LINEAR, bits, n, k, int(bias is not None),
                       *x_bounds, *w_bounds, len(packed))
    tail = bias.detach().float().numpy().astype("<f4").tobytes() if bias is not None else b""
    return head + packed + tail


def bmm_blob(a_bounds, b_bounds, bits: int, b_transposed: bool) -> bytes:
    return struct.pack("<4sIIII4f", MAGIC, VERSION, OP_BMM, bits, int(b_transposed), *a_bounds, *b_bounds)


def attention_blob(heads: int, has_mask: bool, bounds, bits: int) -> bytes:
    return struct.pack("<4sIIIII8f", MAGIC, VERSION, OP_ATTENTION, bits, heads, int(has_mask), *bounds)


def _f32_bytes(t: torch.Tensor) -> bytes:
    return t.detach().float().reshape(-1).numpy().astype("<f4").tobytes()


def swin_block_blob(norm1, norm2, bias_table, weights, biases, height: int, width: int, window: int, shift: int,
                    heads: int, q_scale: float, eps1: float, eps2: float, bounds, bits: int) -> bytes:
    dim, hidden = norm1[0].numel(), weights[4].shape[0]
    parts = [struct.pack("<4sIII7I3f32f", MAGIC, VERSION, OP_SWIN_BLOCK, bits, dim, heads, window, shift, hidden,
                         height, width, eps1, eps2, q_scale, *bounds)]
    parts += [_f32_bytes(t) for t in (*norm1, *norm2, bias_table)]
    for i, (w, b) in enumerate(zip(weights, biases)):
        wl, wu = bounds[4 * i + 2 : 4 * i + 4]
        codes = quant_codes(w.detach().float(), torch.tensor(wl), torch.tensor(wu), bits)
        packed = pack_codes(codes.numpy(), bits).tobytes()
        parts += [struct.pack("<I", len(packed)), packed, struct.pack("<I", int(b is not None))]
        if b is not None:
            parts.append(_f32_bytes(b))
    return b"".join(parts)
