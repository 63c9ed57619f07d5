"""Bit packing of quantization codes: b-bit unsigned codes as a little-endian bit stream.

For b = 4 that is two codes per byte, the first in the low nibble: codes [1, 2, 15] -> bytes [0x21, 0x0F].
For b = 3, eight codes fill three bytes; b = 2, four codes per byte; b = 8, one code per byte. The last byte
is zero-padded, so odd lengths round-trip given the code count.
"""

from __future__ import annotations

import numpy as np


def packed_size(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    codes = np.asarray(codes).reshape(-1)
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    if codes.size and (codes.min() < 0 or codes.max() >= (1 << bits)):
        raise ValueError(f"codes out of range for {bits} bits")
    if bits == 8:
        return codes.astype(np.uint8)
    # (N, bits) matrix of each code's bits, least significant first, then one flat stream of bits.
    bitplanes = (codes.astype(np.uint16)[:, None] >> np.arange(bits, dtype=np.uint16)) & 1
    return np.packbits(bitplanes.reshape(-1).astype(np.uint8), bitorder="little")


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if packed.size != packed_size(count, bits):
        raise ValueError(f"{packed.size} bytes cannot hold exactly {count} codes of {bits} bits")
    if bits == 8:
        return packed.copy()
    stream = np.unpackbits(packed, bitorder="little")[: count * bits].reshape(count, bits)
    return (stream.astype(np.uint16) << np.arange(bits, dtype=np.uint16)).sum(1).astype(np.uint8)
