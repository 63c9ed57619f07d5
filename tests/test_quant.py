"""2DQuant core: quantizer math vs NumPy, DOBI, DQC, packing, artifact round trip, config errors."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesr.converter.artifact import load_artifact, read_artifact_metadata, save_artifact
from edgesr.converter.bounds import dobi
from edgesr.converter.calibrate import calibrate
from edgesr.converter.config import DQCConfig, QuantConfig, QuantConfigError
from edgesr.converter.dqc import FeatureTaps, distillation_loss, feature_loss, run_dqc
from edgesr.converter.pack import pack_codes, packed_size, unpack_codes
from edgesr.converter.quant import fake_quantize, quantize, quantizers
from edgesr.models.swinir import SwinIR, SwinIRConfig

from conftest import TINY


def fake_quantize_reference(v, lower, upper, bits):
    """Plain autograd oracle for the fused op: clip by ``where``, straight-through round."""
    levels = 2**bits - 1
    vc = torch.where(v < lower, lower, torch.where(v > upper, upper, v))
    step = (upper - lower) / levels
    x = (vc - lower) / step
    return ((x.round() - x).detach() + x) * step + lower


def np_fake_quant(v, lo, hi, bits):
    levels = 2**bits - 1
    s = (hi - lo) / levels
    r = np.floor((np.clip(v, lo, hi) - lo) / s + 0.5)  # ties are measure-zero for random floats
    return r * s + lo, r


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_fake_quant_matches_numpy(bits):
    rng = np.random.default_rng(bits)
    v = rng.normal(0, 1, 1000)
    q = fake_quantize(torch.tensor(v), torch.tensor(-0.7, dtype=torch.float64), torch.tensor(1.3, dtype=torch.float64), bits)
    ref, r = np_fake_quant(v, -0.7, 1.3, bits)
    assert np.allclose(q.numpy(), ref, atol=1e-12)
    assert r.min() == 0 and r.max() == 2**bits - 1
    assert len(np.unique(q.numpy())) <= 2**bits


@pytest.mark.parametrize("bits", [2, 4])
def test_fused_op_equals_autograd_reference(bits):
    torch.manual_seed(bits)
    v = (torch.randn(4096) * 2).requires_grad_()
    v2 = v.detach().clone().requires_grad_()
    lo, hi = torch.tensor(-1.2, requires_grad=True), torch.tensor(1.5, requires_grad=True)
    lo2, hi2 = lo.detach().clone().requires_grad_(), hi.detach().clone().requires_grad_()
    g = torch.randn(4096)
    a, b = fake_quantize(v, lo, hi, bits), fake_quantize_reference(v2, lo2, hi2, bits)
    assert torch.equal(a, b)
    (a * g).sum().backward()
    (b * g).sum().backward()
    assert torch.allclose(v.grad, v2.grad, rtol=1e-6, atol=1e-7)  # autograd computes g*s/s
    assert lo.grad.item() == pytest.approx(lo2.grad.item(), abs=1e-4)
    assert hi.grad.item() == pytest.approx(hi2.grad.item(), abs=1e-4)
    with torch.no_grad():
        assert torch.equal(fake_quantize(v, lo, hi, bits), b)


def test_ste_gradients_follow_the_paper():
    v = torch.tensor([-2.0, -0.3, 0.26, 0.9, 3.0], requires_grad=True)
    lo = torch.tensor(-1.0, requires_grad=True)
    hi = torch.tensor(1.0, requires_grad=True)
    bits = 2
    fake_quantize(v, lo, hi, bits).sum().backward()
    # v: gradient 1 inside [l, u], 0 outside (STE through round, clip blocks outside).
    assert v.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    # Closed forms: dq/du = H(v-u) + r/L - (vc-l)/(u-l); dq/dl = H(l-v) - r/L + (vc-l)/(u-l).
    levels = 2**bits - 1
    vals = v.detach().numpy()
    vc = np.clip(vals, -1, 1)
    r = np.floor((vc + 1) / (2 / levels) + 0.5)
    du = (vals > 1) + r / levels - (vc + 1) / 2
    dl = (vals < -1) - r / levels + (vc + 1) / 2
    assert hi.grad.item() == pytest.approx(du.sum(), abs=1e-6)
    assert lo.grad.item() == pytest.approx(dl.sum(), abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8), st.integers(0, 300))
def test_pack_round_trip_any_length(bits, n):
    codes = np.random.default_rng(n).integers(0, 2**bits, n).astype(np.uint8)
    packed = pack_codes(codes, bits)
    assert packed.dtype == np.uint8 and packed.size == packed_size(n, bits)
    assert np.array_equal(unpack_codes(packed, bits, n), codes)


def test_pack_layout_is_documented():
    assert pack_codes(np.array([1, 2, 15]), 4).tolist() == [0x21, 0x0F]
    assert pack_codes(np.array([1, 2, 3, 0]), 2).tolist() == [0b00111001]
    assert pack_codes(np.array([7] * 8), 3).tolist() == [255, 255, 255]
    with pytest.raises(ValueError):
        pack_codes(np.array([16]), 4)


@pytest.mark.parametrize("one_sided", [False, True])
def test_dobi_never_worse_than_minmax(one_sided):
    rng = np.random.default_rng(1)
    for dist in (rng.normal(0, 1, 5000), rng.exponential(1, 5000), rng.standard_t(2, 5000)):
        x = torch.tensor(dist, dtype=torch.float32)
        r = dobi(x, 4, 100, one_sided)
        mse = ((fake_quantize(x.double(), torch.tensor(r["lower"], dtype=torch.float64), torch.tensor(r["upper"], dtype=torch.float64), 4) - x.double()) ** 2).mean()
        mm = ((fake_quantize(x.double(), x.min().double(), x.max().double(), 4) - x.double()) ** 2).mean()
        assert float(mse) <= float(mm) + 1e-12
        assert r["mse"] == pytest.approx(float(mse), rel=1e-6)
        if one_sided:
            assert r["lower"] == pytest.approx(float(x.min()))


def test_dobi_histogram_path_close_to_exact():
    x = torch.randn(1 << 19)
    r = dobi(x, 4, 50)  # > EXACT_LIMIT elements: histogram objective
    exact = ((fake_quantize(x, torch.tensor(r["lower"]), torch.tensor(r["upper"]), 4) - x) ** 2).mean()
    assert r["mse"] == pytest.approx(float(exact), rel=0.02)
    assert r["mse"] < r["minmax_mse"]


def _tiny_fp(scale=2):
    torch.manual_seed(0)
    return SwinIR(SwinIRConfig(scale=scale, **TINY)).eval()


def test_quantize_inserts_16_quantizers_per_block_and_leaves_fp_untouched():
    fp = _tiny_fp()
    before = {k: v.clone() for k, v in fp.state_dict().items()}
    q = quantize(fp, QuantConfig(bits=4))
    assert len(quantizers(q)) == 16 * sum(TINY["depths"])
    assert all(torch.equal(before[k], v) for k, v in fp.state_dict().items())
    assert not any(type(m).__name__.startswith("Quant") for m in fp.modules())
    trainable = [n for n, p in q.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith((".lower", ".upper")) for n in trainable)
    qs = quantizers(q)
    assert qs["layers.0.blocks.0.attn.av_matmul.a"].one_sided and qs["layers.0.blocks.0.mlp.fc2.input"].one_sided
    assert not qs["layers.0.blocks.0.attn.qk_matmul.a"].one_sided


def test_exclude_and_patterns():
    q = quantize(_tiny_fp(), QuantConfig(exclude=("layers.0.*",)))
    assert not any(n.startswith("layers.0.") for n in quantizers(q))
    with pytest.raises(QuantConfigError, match="matches no"):
        quantize(_tiny_fp(), QuantConfig(linears=("*.attn.qkv",)))


@pytest.mark.parametrize("bad", [{"bits": 0}, {"bits": 9}, {"init": "magic"}, {"percentile": 20}, {"nope": 1}, {"dqc": {"iterations": -1}}])
def test_bad_config_values_are_clear_errors(bad):
    with pytest.raises(QuantConfigError):
        QuantConfig.from_dict(bad)


def test_config_round_trips_json_and_yaml(tmp_path):
    c = QuantConfig(bits=3, init="percentile", exclude=("layers.3.*",), dqc=DQCConfig(iterations=7))
    assert QuantConfig.from_json(c.to_json()) == c
    c.save(tmp_path / "c.yaml")
    assert QuantConfig.load(tmp_path / "c.yaml") == c
    with pytest.raises(QuantConfigError, match="unknown DQC preset"):
        DQCConfig.preset("fastest")


def test_calibration_records_choices_and_dobi_beats_minmax():
    fp = _tiny_fp()
    x = torch.rand(4, 3, 16, 16)
    qd = quantize(fp, QuantConfig(bits=4, init="dobi"))
    rep = calibrate(qd, x, qd.quant_config)
    assert len(rep) == len(quantizers(qd))
    assert rep["layers.0.blocks.1.attn.av_matmul.a"]["one_sided"] is True
    assert rep["layers.0.blocks.1.attn.q.input"]["one_sided"] is False
    assert all(r["mse"] <= r["minmax_mse"] + 1e-12 for r in rep.values())
    qm = quantize(fp, QuantConfig(bits=4, init="minmax"))
    calibrate(qm, x, qm.quant_config)
    with torch.no_grad():
        ref = fp(x)
        assert (qd(x) - ref).abs().mean() < (qm(x) - ref).abs().mean()


class _FixedSampler:
    def __init__(self, x):
        self.x = x

    def batch_at(self, step):
        return self.x, None


def test_dqc_lowers_distillation_loss_and_freezes_weights():
    fp = _tiny_fp()
    x = torch.rand(4, 3, 16, 16)
    q = quantize(fp, QuantConfig(bits=3, init="minmax"))
    calibrate(q, x, q.quant_config)
    taps_s, taps_t = FeatureTaps(q), FeatureTaps(fp)
    with torch.no_grad():
        before = distillation_loss(q, fp, x, 5.0, taps_s, taps_t)[0].item()
    taps_s.close(), taps_t.close()
    weights_before = {k: v.clone() for k, v in q.state_dict().items() if not k.endswith((".lower", ".upper"))}
    cfg = DQCConfig(iterations=20, lr=1e-2, feature_weight=5.0)
    run_dqc(q, fp, _FixedSampler(x), cfg, quiet=True)
    taps_s, taps_t = FeatureTaps(q), FeatureTaps(fp)
    with torch.no_grad():
        after = distillation_loss(q, fp, x, 5.0, taps_s, taps_t)[0].item()
    assert after < 0.9 * before
    assert all(torch.equal(weights_before[k], v) for k, v in q.state_dict().items() if k in weights_before)


def test_dqc_resume_matches_uninterrupted(tmp_path):
    fp = _tiny_fp()
    x = torch.rand(2, 3, 16, 16)
    cfg = DQCConfig(iterations=8, lr=1e-2)

    def fresh():
        q = quantize(fp, QuantConfig(bits=4, init="minmax"))
        calibrate(q, x, q.quant_config)
        return q

    a = fresh()
    run_dqc(a, fp, _FixedSampler(x), cfg, quiet=True)
    b = fresh()
    run_dqc(b, fp, _FixedSampler(x), cfg, state_path=tmp_path / "s.pt", quiet=True, save_every=2, stop_after=5)
    assert torch.load(tmp_path / "s.pt", weights_only=False)["iteration"] == 4  # killed after 5, saved at 4
    b = fresh()
    run_dqc(b, fp, _FixedSampler(x), cfg, state_path=tmp_path / "s.pt", quiet=True, save_every=2)
    assert all(torch.equal(qa.lower, qb.lower) and torch.equal(qa.upper, qb.upper)
               for qa, qb in zip(quantizers(a).values(), quantizers(b).values()))


def test_dqc_refuses_the_state_of_another_run(tmp_path):
    """A work folder left by another model or config is not resumed (its bounds would be written silently)."""
    from edgesr.errors import EdgesrError

    fp = _tiny_fp()
    x = torch.rand(2, 3, 16, 16)
    cfg = DQCConfig(iterations=4, lr=1e-2)
    q = quantize(fp, QuantConfig(bits=4, init="minmax"))
    calibrate(q, x, q.quant_config)
    run_dqc(q, fp, _FixedSampler(x), cfg, state_path=tmp_path / "s.pt", quiet=True, save_every=2, stop_after=2)
    for bits, other_cfg in ((3, cfg), (4, DQCConfig(iterations=4, lr=5e-3))):
        other = quantize(fp, QuantConfig(bits=bits, init="minmax"))
        calibrate(other, x, other.quant_config)
        with pytest.raises(EdgesrError, match="another run"):
            run_dqc(other, fp, _FixedSampler(x), other_cfg, state_path=tmp_path / "s.pt", quiet=True)


def test_feature_loss_is_per_sample():
    a = torch.randn(3, 16, 8)
    b = a.clone()
    b[1] *= 5.0  # a per-sample rescale leaves normalised features unchanged
    assert feature_loss([a], [b]).item() == pytest.approx(0.0, abs=1e-10)
    c = a.clone()
    c[1] = torch.randn(16, 8)
    assert feature_loss([a], [c]).item() > 0.1


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_artifact_round_trip_is_bit_exact(tmp_path, bits):
    fp = _tiny_fp(scale=3)
    q = quantize(fp, QuantConfig(bits=bits))
    x = torch.rand(2, 3, 16, 16)
    calibrate(q, x, q.quant_config)
    rep = save_artifact(q, tmp_path / "a.safetensors", {"note": "test"})
    loaded = load_artifact(tmp_path / "a.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded(x), q(x))
    meta = read_artifact_metadata(tmp_path / "a.safetensors")
    assert meta["quant_config"]["bits"] == bits and meta["provenance"]["note"] == "test"
    assert rep["artifact_bytes"] == (tmp_path / "a.safetensors").stat().st_size
