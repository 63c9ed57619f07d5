"""Checkpoint formats: official SwinIR layout (synthetic file) and edgesr's safetensors."""

import json

import pytest
import torch

from edgesr.errors import CheckpointError
from edgesr.models.checkpoint import load_model, read_metadata, save_checkpoint
from edgesr.models.swinir import SwinIR, SwinIRConfig
from reference_swinir import RefSwinIR

from conftest import TINY


def _official_file(tmp_path, key="params_ema", scale=3, **kw):
    ref = RefSwinIR(scale=scale, dim=12, depths=(2, 2), heads=(2, 3), ws=4, img_size=8, **kw).eval()
    sd = ref.state_dict()
    assert any(k.endswith("attn_mask") for k in sd) and any(k.endswith("relative_position_index") for k in sd)
    path = tmp_path / "official.pth"
    torch.save({key: sd, "params": sd} if key == "params_ema" else {key: sd}, path)
    return ref, path


@pytest.mark.parametrize("key", ["params_ema", "params"])
def test_official_layout_loads_and_matches(tmp_path, key):
    ref, path = _official_file(tmp_path, key)
    model = load_model(path)
    assert model.config == SwinIRConfig(scale=3, **TINY)
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max() <= 1e-5


def test_wrong_scale_is_a_clear_error(tmp_path):
    _, path = _official_file(tmp_path)
    with pytest.raises(CheckpointError, match="x3, but x4 was requested"):
        load_model(path, scale=4)


def test_missing_key_is_named(tmp_path):
    ref, _ = _official_file(tmp_path)
    sd = ref.state_dict()
    del sd["layers.1.residual_group.blocks.1.mlp.fc2.bias"]
    torch.save({"params": sd}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"layers\.1\.blocks\.1\.mlp\.fc2\.bias"):
        load_model(tmp_path / "broken.pth")


def test_other_architecture_is_named(tmp_path):
    sd = {"conv_first.weight": torch.zeros(64, 3, 3, 3), "conv_before_upsample.0.weight": torch.zeros(64, 64, 3, 3)}
    torch.save({"params": sd}, tmp_path / "classical.pth")
    with pytest.raises(CheckpointError, match="conv_before_upsample"):
        load_model(tmp_path / "classical.pth")
    torch.save({"params": {"body.0.weight": torch.zeros(3)}}, tmp_path / "edsr.pth")
    with pytest.raises(CheckpointError, match="conv_first.weight"):
        load_model(tmp_path / "edsr.pth")


class _Custom:  # any class: weights_only loading refuses to build it
    pass


def test_garbage_file_is_a_clear_error(tmp_path):
    torch.save({"params": {"x": torch.zeros(2)}}, tmp_path / "good.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_model(tmp_path / "junk.pth")
    (tmp_path / "notes.txt").write_text("a text file given as the model")
    with pytest.raises(CheckpointError, match="not a PyTorch file"):
        load_model(tmp_path / "notes.txt")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "good.pth").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_model(tmp_path / "cut.pth")
    torch.save({"params": {}, "opt": _Custom()}, tmp_path / "pickled_object.pth")
    with pytest.raises(CheckpointError, match="objects besides tensors"):
        load_model(tmp_path / "pickled_object.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        load_model(tmp_path / "junk.safetensors")


def test_own_format_round_trip(tmp_path):
    m = SwinIR(SwinIRConfig(scale=2, **TINY)).eval()
    path = save_checkpoint(m, tmp_path / "m.safetensors", {"step": "7"})
    meta = read_metadata(path)
    assert json.loads(meta["edgesr.config"])["scale"] == 2 and meta["edgesr.step"] == "7"
    loaded = load_model(path)
    assert loaded.config == m.config
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))
    from safetensors.torch import load_file

    keys = load_file(str(path)).keys()
    assert not any("mask" in k or "index" in k or k == "mean" for k in keys)


def test_own_format_shape_mismatch_is_named(tmp_path):
    m = SwinIR(SwinIRConfig(scale=2, **TINY))
    path = save_checkpoint(m, tmp_path / "m.safetensors")
    from safetensors.torch import load_file, save_file

    sd = load_file(str(path))
    sd["conv_after_body.weight"] = torch.zeros(12, 12, 1, 1)
    save_file(sd, str(tmp_path / "bad.safetensors"), metadata=read_metadata(path))
    with pytest.raises(CheckpointError, match="conv_after_body.weight"):
        load_model(tmp_path / "bad.safetensors")
