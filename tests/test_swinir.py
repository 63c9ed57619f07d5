"""SwinIR-light against a straightforward reference (tests/reference_swinir.py) and window-op identities."""

import pytest
import torch

from edgesr.models.checkpoint import convert_official, infer_config
from edgesr.models.swinir import (
    SwinIR,
    SwinIRConfig,
    count_parameters,
    cyclic_shift,
    pad_to_multiple,
    relative_position_index,
    run_padded,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from reference_swinir import RefAttention, RefSwinIR, ref_mask, ref_window_partition, ref_window_reverse
from conftest import TINY


@pytest.mark.parametrize("b,h,w,c,ws", [(1, 16, 16, 6, 8), (2, 8, 24, 5, 4), (3, 12, 20, 7, 4)])
def test_window_partition_and_reverse_match_reference(b, h, w, c, ws):
    x = torch.randn(b, h, w, c)
    ours = window_partition(x, ws)
    ref = ref_window_partition(x, ws).view(-1, ws * ws, c)
    assert torch.equal(ours, ref)
    assert torch.equal(window_reverse(ours, ws, h, w), ref_window_reverse(ref.view(-1, ws, ws, c), ws, h, w))
    assert torch.equal(window_reverse(ours, ws, h, w), x)


@pytest.mark.parametrize("shift", [-4, 4, -2, 3, 0])
def test_cyclic_shift_equals_roll(shift):
    x = torch.randn(2, 16, 24, 3)
    assert torch.equal(cyclic_shift(x, shift), torch.roll(x, shifts=(shift, shift), dims=(1, 2)))


@pytest.mark.parametrize("h,w,ws", [(16, 16, 8), (8, 24, 4), (64, 64, 8)])
def test_mask_matches_reference(h, w, ws):
    assert torch.equal(shifted_window_mask(h, w, ws, ws // 2), ref_mask(h, w, ws, ws // 2))


def test_relative_position_index_matches_reference():
    assert torch.equal(relative_position_index(8), RefAttention(12, 8, 2).relative_position_index)


def test_index_cached_per_window_size():
    assert relative_position_index(8) is relative_position_index(8)


def _pair(scale, img_size, **kw):
    ref = RefSwinIR(scale=scale, img_size=img_size, **kw).eval()
    cfg = infer_config(ref.state_dict())
    ours = SwinIR(cfg).eval()
    ours.load_state_dict(convert_official(ref.state_dict()))
    return ref, ours


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_full_model_matches_reference_light_config(scale):
    ref, ours = _pair(scale, img_size=16)
    assert ours.config == SwinIRConfig(scale=scale)
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        diff = (ours(x) - ref(x)).abs().max().item()
    assert diff <= 1e-5


def test_reference_at_its_stored_mask_resolution():
    ref, ours = _pair(2, img_size=16, dim=12, depths=(2,), heads=(3,), ws=4)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max().item() <= 1e-5


def test_light_parameter_count():
    # 0.93 M with the 24 relative-position tables (the papers quote 0.90 M without them).
    n = count_parameters(SwinIR(SwinIRConfig(scale=4)))
    tables = 24 * 15 * 15 * 6
    assert n - tables == 897_228


def test_rejects_non_multiple_input():
    with pytest.raises(ValueError, match="multiple of the window size"):
        SwinIR(SwinIRConfig(scale=2, embed_dim=12, depths=(1,), num_heads=(2,), window_size=4))(torch.rand(1, 3, 10, 12))


def test_pad_to_multiple_mirrors_like_the_test_script():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).view(2, 3, 5, 6)
    y = pad_to_multiple(x, 4)
    assert y.shape == (2, 3, 8, 8)
    assert torch.equal(y[:, :, :5, :6], x)
    assert torch.equal(y[:, :, 5:8, :6], torch.flip(x, [2])[:, :, :3])
    tiny = pad_to_multiple(torch.rand(1, 3, 2, 3), 8)  # needs more than one mirror round
    assert tiny.shape == (1, 3, 8, 8)


def test_run_padded_crops_back():
    m = SwinIR(SwinIRConfig(scale=3, embed_dim=12, depths=(1,), num_heads=(2,), window_size=4)).eval()
    assert run_padded(m, torch.rand(1, 3, 7, 9)).shape == (1, 3, 21, 27)


def test_training_after_inference_in_the_same_process():
    """The cached window constants, first built under inference_mode (an upscale), stay usable by autograd."""
    from edgesr.models import swinir

    for fn in (swinir.relative_position_index, swinir.shifted_window_regions, swinir.shifted_window_mask):
        fn.cache_clear()
    torch.manual_seed(0)
    m = swinir.SwinIR(swinir.SwinIRConfig(scale=2, **TINY))
    x = torch.rand(1, 3, 8, 8)
    with torch.inference_mode():
        m.eval()(x)
    loss = m.train()(x).mean()
    loss.backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
