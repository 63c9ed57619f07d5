"""Fused quantized window attention kernel vs an integer NumPy reference and the fake-quant PyTorch op."""

import numpy as np
import pytest
import torch

from edgesr import native
from edgesr.converter.export import ops


def _codes(x, lo, hi, bits):
    step = np.float32((np.float32(hi) - np.float32(lo)) / np.float32(2**bits - 1))
    t = (np.clip(x, np.float32(lo), np.float32(hi)) - np.float32(lo)) / step
    return np.rint(t).astype(np.int64), step


def reference(q, k, v, bias, mask, heads, bounds, bits):
    """Integer accumulators (int64) + float64 softmax: independent of the kernel's float tricks."""
    (ql, qu, kl, ku, al, au, vl, vu) = bounds
    cq, sq = _codes(q, ql, qu, bits)
    ck, sk = _codes(k, kl, ku, bits)
    cv, sv = _codes(v, vl, vu, bits)
    t, n, hd = q.shape
    acc = np.einsum("tid,tjd->tij", cq, ck)  # exact integers
    logits = (float(sq) * float(sk) * acc + float(sq) * kl * cq.sum(2)[:, :, None]
              + ql * float(sk) * ck.sum(2)[:, None, :] + hd * ql * kl)
    logits = logits.reshape(t // heads, heads, n, n) + bias[None]
    if mask is not None:
        logits = logits + mask[np.arange(t // heads) % mask.shape[0]][:, None]  # window g uses mask[g % nW]
    logits = logits.reshape(t, n, n)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ca, sa = _codes(p.astype(np.float32), al, au, bits)
    acc2 = np.einsum("tij,tjd->tid", ca, cv)
    return (float(sa) * float(sv) * acc2 + float(sa) * vl * ca.sum(2)[:, :, None]
            + al * float(sv) * cv.sum(1)[:, None, :] + n * al * vl)


def _case(rng, groups, heads, n, hd, with_mask):
    q = rng.normal(0, 1, (groups * heads, n, hd)).astype(np.float32)
    k = rng.normal(0, 1, (groups * heads, n, hd)).astype(np.float32)
    v = rng.normal(0, 1, (groups * heads, n, hd)).astype(np.float32)
    bias = rng.normal(0, 0.5, (heads, n, n)).astype(np.float32)
    mask = None
    if with_mask:
        windows = 2 if groups % 2 == 0 else 1
        mask = np.where(rng.random((windows, n, n)) < 0.3, -100.0, 0.0).astype(np.float32)
    bounds = [-1.5, 1.7, -2.0, 1.9, 0.0, 0.6, -2.1, 2.2]
    return q, k, v, bias, mask, bounds


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("shape", [(4, 3, 16, 10), (2, 2, 64, 10), (3, 1, 7, 5)])
@pytest.mark.parametrize("with_mask", [False, True])
def test_fused_attention_matches_integer_reference(bits, shape, with_mask):
    rng = np.random.default_rng(sum(shape) * bits)
    groups, heads, n, hd = shape
    q, k, v, bias, mask, bounds = _case(rng, groups, heads, n, hd, with_mask)
    ref = reference(q, k, v, bias, mask, heads, bounds, bits)
    step_out = (bounds[5] / (2**bits - 1)) * (bounds[7] - bounds[6]) / (2**bits - 1)
    for isa in native.available_isas():
        with native.force_isa(isa):
            for threads in (1, 2):
                out = native.qattention(q, k, v, bias, mask, heads, bounds, bits, threads=threads)
                err = np.abs(out - ref)
                # Equal up to float rounding, except where the attention map sits on a rounding tie and one
                # code differs: that moves an output by at most |v code range| * step of the product.
                assert np.mean(err < 1e-4) > 0.99, (isa, threads, err.max())
                assert err.max() <= step_out * (2**bits - 1) + 1e-4


def test_fused_attention_matches_fake_quant_op():
    rng = np.random.default_rng(7)
    q, k, v, bias, mask, bounds = _case(rng, 4, 3, 16, 10, True)
    want = ops.qattention(*(torch.from_numpy(t) for t in (q, k, v, bias, mask)), 3, bounds, 4).numpy()
    got = native.qattention(q, k, v, bias, mask, 3, bounds, 4)
    assert np.mean(np.abs(got - want) < 1e-4) > 0.99


def test_bad_arguments():
    rng = np.random.default_rng(0)
    q, k, v, bias, mask, bounds = _case(rng, 2, 2, 8, 4, False)
    with pytest.raises(ValueError):
        native.qattention(q, k, v, bias[:1], None, 2, bounds, 4)
    with pytest.raises(ValueError, match="upper > lower"):
        native.qattention(q, k, v, bias, None, 2, [1, 0] * 4, 4)
