"""Whole quantized Swin block: the native op and the ``edgesr::qswin_block`` op vs the fake-quant model's block."""

import numpy as np
import pytest
import torch

from edgesr import native
from edgesr.converter import QuantConfig, quantize
from edgesr.converter.calibrate import calibrate
from edgesr.converter.export import ops, swin_block
from edgesr.models.swinir import SwinIR, SwinIRConfig
from tests.conftest import TINY

TILE = (8, 12)


def _random_quant_model(seed: int, tile: tuple[int, int], **config) -> SwinIR:
    """A tiny W4A4 model with large random weights (so every quantizer is exercised), MinMax bounds."""
    torch.manual_seed(seed)
    m = SwinIR(SwinIRConfig(scale=2, **{**TINY, **config})).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    qc = QuantConfig(bits=4, init="minmax")
    q = quantize(m, qc)
    calibrate(q, torch.rand(2, 3, *tile), qc)
    return q.eval()


@pytest.fixture(scope="module")
def quant_model():
    return _random_quant_model(0, TILE)


def _blocks(q):
    return [blk for layer in q.layers for blk in layer.blocks]


def test_tiny_model_covers_shifted_and_plain_blocks(quant_model):
    assert {blk.shift for blk in _blocks(quant_model)} == {0, 2}


def test_block_op_equals_model_block(quant_model):
    x = torch.randn(1, TILE[0] * TILE[1], TINY["embed_dim"])
    for blk in _blocks(quant_model):
        scalars = swin_block.block_scalars(blk, TILE)
        with torch.no_grad():
            want = blk(x, TILE)
            got = ops.qswin_block(x, **swin_block.block_tensors(blk), **vars(scalars))
        assert (got - want).abs().max() < 1e-5


def _assert_native_blocks_match(blocks, x: np.ndarray, tile: tuple[int, int]) -> None:
    """Each block's native op on every ISA, 1 and 2 threads, against the fake-quant block."""
    for blk in blocks:
        with torch.no_grad():
            want = blk(torch.from_numpy(x)[None], tile)[0].numpy()
        kwargs = swin_block.native_kwargs(swin_block.block_tensors(blk), swin_block.block_scalars(blk, tile))
        for isa in native.available_isas():
            with native.force_isa(isa):
                block = native.SwinBlock(**kwargs)
                for threads in (1, 2):
                    err = np.abs(block.run(x, threads=threads) - want)
                    # Float rounding, except where a value sits on a quantizer's rounding tie: then one code
                    # flips (the scalar path, without FMA, rounds LayerNorm differently) and moves one token.
                    bad_tokens = int(np.any(err > 1e-4, axis=1).sum())
                    assert bad_tokens <= 2, (isa, threads, bad_tokens, err.max())
                    assert err.max() < 0.5, (isa, threads)


def test_native_block_matches_model_block_on_every_isa(quant_model):
    x = np.random.default_rng(3).normal(0, 1, (TILE[0] * TILE[1], TINY["embed_dim"])).astype(np.float32)
    _assert_native_blocks_match(_blocks(quant_model), x, TILE)


def test_native_block_with_64_token_windows_matches_model_block():
    """Window 8, SwinIR-light's: the attention's 64-token paths (float, and VNNI where the CPU has it) inside
    whole-window tasks (tile 16 x 16: four windows, shifted and plain blocks), against the fake-quant block."""
    q = _random_quant_model(2, (16, 16), window_size=8)
    blocks = _blocks(q)
    assert {blk.shift for blk in blocks} == {0, 4}
    x = np.random.default_rng(4).normal(0, 1, (256, TINY["embed_dim"])).astype(np.float32)
    _assert_native_blocks_match(blocks, x, (16, 16))


def test_block_eligibility(quant_model):
    blk = _blocks(quant_model)[0]
    assert swin_block.block_bits(blk) == 4
    fp = SwinIR(SwinIRConfig(scale=2, **TINY))
    assert swin_block.block_bits(fp.layers[0].blocks[0]) is None
    with pytest.raises(ValueError, match="not uniformly quantized"):
        swin_block.block_scalars(fp.layers[0].blocks[0], TILE)


def test_native_block_rejects_bad_geometry(quant_model):
    blk = _blocks(quant_model)[0]
    kwargs = swin_block.native_kwargs(swin_block.block_tensors(blk), swin_block.block_scalars(blk, TILE))
    with pytest.raises(ValueError, match="rejected"):
        native.SwinBlock(**{**kwargs, "height": 7})  # not a multiple of the window
    with pytest.raises(ValueError, match="rejected"):
        native.SwinBlock(**{**kwargs, "shift": kwargs["window"]})
    block = native.SwinBlock(**kwargs)
    with pytest.raises(ValueError, match="tokens"):
        block.run(np.zeros((5, TINY["embed_dim"]), np.float32))


def test_gelu_and_layer_norm_inside_the_block_are_accurate():
    """A block whose quantizers are so fine (8 bits, wide bounds) that LN / GELU / softmax accuracy shows."""
    torch.manual_seed(1)
    m = SwinIR(SwinIRConfig(scale=2, **TINY)).eval()
    config = QuantConfig(bits=8, init="minmax")
    q = quantize(m, config)
    calibrate(q, torch.rand(2, 3, *TILE), config)
    blk = q.layers[0].blocks[1]
    x = torch.randn(1, TILE[0] * TILE[1], TINY["embed_dim"]) * 3
    with torch.no_grad():
        want = blk(x, TILE)[0].numpy()
    kwargs = swin_block.native_kwargs(swin_block.block_tensors(blk), swin_block.block_scalars(blk, TILE))
    got = native.SwinBlock(**kwargs).run(x[0].numpy())
    err = np.abs(got - want)
    assert np.mean(err < 1e-4) > 0.98, err.max()


def test_native_blob_parser_builds_the_same_block(quant_model):
    """The delegates' path (blob bytes -> edgesr_swin_block_from_blob) equals the descriptor path bit for bit."""
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (TILE[0] * TILE[1], TINY["embed_dim"])).astype(np.float32)
    for blk in _blocks(quant_model):
        kwargs = swin_block.native_kwargs(swin_block.block_tensors(blk), swin_block.block_scalars(blk, TILE))
        blob = swin_block.block_blob(blk, TILE)
        from_blob = native.SwinBlock.from_blob(blob)
        assert (from_blob.tokens, from_blob.dim) == (TILE[0] * TILE[1], TINY["embed_dim"])
        np.testing.assert_array_equal(from_blob.run(x), native.SwinBlock(**kwargs).run(x))


@pytest.mark.parametrize("damage", ["truncated", "trailing", "magic", "version", "op", "packed_count"])
def test_native_blob_parser_rejects_damaged_blobs(quant_model, damage):
    blob = bytearray(swin_block.block_blob(_blocks(quant_model)[0], TILE))
    if damage == "truncated":
        blob = blob[:-3]
    elif damage == "trailing":
        blob += b"\0"
    elif damage == "magic":
        blob[0:4] = b"XXXX"
    elif damage == "version":
        blob[4] = 9
    elif damage == "op":
        blob[8] = 1
    else:  # the q linear's packed byte count, right after the fixed header, norms and table
        c, heads, ws = TINY["embed_dim"], TINY["num_heads"][0], TINY["window_size"]
        at = 184 + 4 * (4 * c + (2 * ws - 1) ** 2 * heads)
        blob[at] ^= 1
    with pytest.raises(ValueError, match="not a valid Swin-block blob"):
        native.SwinBlock.from_blob(bytes(blob))
