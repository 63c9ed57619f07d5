"""Checkpoint loading and saving.

Two formats:

* edgesr's own: a ``.safetensors`` file of FP32 parameters whose metadata carries the JSON config
  (``edgesr.format`` = ``swinir/1``, ``edgesr.config`` = :class:`SwinIRConfig` as JSON). No buffers.
* the official SwinIR / KAIR / BasicSR ``.pth`` files: a dict with ``params_ema`` or ``params`` (or the raw
  state dict), a fused ``qkv`` Linear per block, and stored ``attn_mask`` / ``relative_position_index``
  buffers (dropped: edgesr rebuilds them).

Hyper-parameters and the scale are inferred from tensor shapes; any mismatch is a :class:`CheckpointError`
that names the offending key.
"""

from __future__ import annotations

import json
import pickle
import re
from collections import defaultdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from edgesr.errors import CheckpointError
from edgesr.models.swinir import SwinIR, SwinIRConfig

FORMAT = "swinir/1"
_IGNORED = re.compile(r"(attn_mask|relative_position_index)$")


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, meta: dict[str, str]) -> Path:
    """Atomic write (temporary file + rename): an interrupted save never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_checkpoint(model: SwinIR, path: str | Path, extra_meta: dict | None = None) -> Path:
    """Write parameters (FP32, contiguous) and the config."""
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"edgesr.format": FORMAT, "edgesr.config": json.dumps(model.config.to_dict(), sort_keys=True)}
    for k, v in (extra_meta or {}).items():
        meta[f"edgesr.{k}"] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return write_safetensors(tensors, path, meta)


def read_metadata(path: str | Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


# ---------------------------------------------------------------------------------------------------------
# Official layout


def _official_state_dict(obj) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("params_ema", "params", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise CheckpointError("not a SwinIR checkpoint: expected a state dict or a dict with 'params_ema' / 'params'")


def infer_config(sd: dict[str, torch.Tensor]) -> SwinIRConfig:
    """Hyper-parameters of an official-layout state dict, from its tensor shapes."""

    def need(key: str) -> torch.Tensor:
        if key not in sd:
            raise CheckpointError(f"missing key {key!r}: not a SwinIR-light checkpoint")
        return sd[key]

    conv_first = need("conv_first.weight")
    if "conv_before_upsample.0.weight" in sd:
        raise CheckpointError(
            "key 'conv_before_upsample.0.weight' present: this is classical SwinIR (pixelshuffle), "
            "edgesr supports SwinIR-light (pixelshuffledirect)"
        )
    up = need("upsample.0.weight")
    embed_dim, in_chans = conv_first.shape[0], conv_first.shape[1]
    if up.shape[0] % in_chans:
        raise CheckpointError(f"key 'upsample.0.weight' has {up.shape[0]} output channels: not a multiple of {in_chans}")
    scale = round((up.shape[0] // in_chans) ** 0.5)
    if scale * scale * in_chans != up.shape[0]:
        raise CheckpointError(f"key 'upsample.0.weight' has {up.shape[0]} output channels: not in_chans * scale^2")
    blocks: dict[int, set[int]] = defaultdict(set)
    for k in sd:
        m = re.match(r"layers\.(\d+)\.residual_group\.blocks\.(\d+)\.", k)
        if m:
            blocks[int(m.group(1))].add(int(m.group(2)))
    if not blocks:
        raise CheckpointError("no key 'layers.<i>.residual_group.blocks.<j>.*': not a SwinIR checkpoint")
    depths = tuple(len(blocks[i]) for i in range(len(blocks)))
    heads, windows = [], set()
    for i in range(len(blocks)):
        table = need(f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table")
        heads.append(table.shape[1])
        windows.add((round(table.shape[0] ** 0.5) + 1) // 2)
    if len(windows) != 1:
        raise CheckpointError(f"inconsistent window sizes {sorted(windows)} in relative_position_bias_table")
    fc1 = need("layers.0.residual_group.blocks.0.mlp.fc1.weight")
    return SwinIRConfig(
        scale=scale,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=tuple(heads),
        window_size=windows.pop(),
        mlp_ratio=fc1.shape[0] / embed_dim,
        in_chans=in_chans,
    )


def convert_official(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official keys to edgesr's and split each fused qkv Linear into q, k and v."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if _IGNORED.search(key):
            continue
        new = key.replace(".residual_group.blocks.", ".blocks.").replace("patch_embed.norm.", "patch_norm.")
        m = re.match(r"(.*\.attn)\.qkv\.(weight|bias)$", new)
        if m:
            if value.shape[0] % 3:
                raise CheckpointError(f"key {key!r}: fused qkv of {value.shape[0]} rows is not divisible by 3")
            for name, part in zip("qkv", value.chunk(3, dim=0)):
                out[f"{m.group(1)}.{name}.{m.group(2)}"] = part.clone()
            continue
        out[new] = value
    return out


# ---------------------------------------------------------------------------------------------------------
# Loading


def _apply(model: SwinIR, sd: dict[str, torch.Tensor], source: str) -> SwinIR:
    expected = model.state_dict()
    for key in expected:
        if key not in sd:
            raise CheckpointError(f"{source}: missing key {key!r}")
    for key, value in sd.items():
        if key not in expected:
            raise CheckpointError(f"{source}: unexpected key {key!r} (another architecture?)")
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{source}: key {key!r} has shape {tuple(value.shape)}, model expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model.eval()


def load_model(path: str | Path, scale: int | None = None) -> SwinIR:
    """Load an edgesr ``.safetensors`` or an official SwinIR ``.pth``; ``scale`` (if given) must match."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.suffix == ".safetensors":
        try:
            meta = read_metadata(path)
            sd = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None
        if "edgesr.config" in meta:
            if str(meta.get("edgesr.format", "")).startswith("2dquant/"):
                raise CheckpointError(f"{path} is a quantized artifact; a full-precision checkpoint is needed here "
                                      "(a zoo name, an edgesr checkpoint or an official .pth)")
            if meta.get("edgesr.format") != FORMAT:
                raise CheckpointError(f"{path}: format {meta.get('edgesr.format')!r}, expected {FORMAT!r}")
            try:
                config = SwinIRConfig.from_dict(json.loads(meta["edgesr.config"]))
            except (ValueError, TypeError) as e:
                raise CheckpointError(f"{path}: bad config metadata ({e})") from None
        else:  # a plain safetensors export of an official-layout state dict
            sd = convert_official(sd) if any(".residual_group." in k for k in sd) else sd
            config = infer_config(_back_to_official_names(sd))
    else:
        obj = _torch_load(path)
        raw = _official_state_dict(obj)
        config = infer_config(raw)
        sd = convert_official(raw)
    if scale is not None and config.scale != scale:
        raise CheckpointError(f"{path}: checkpoint is x{config.scale}, but x{scale} was requested")
    return _apply(SwinIR(config), sd, str(path))


def _torch_load(path: Path):
    """torch.load with weights_only=True, and an error that says what the file is when it is not a checkpoint."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):  # zip (torch >= 1.6) or pickle >= v2
        raise CheckpointError(f"{path}: cannot read checkpoint: not a PyTorch file (.pth / .pt) nor .safetensors")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):  # a real pickle, but with objects beyond tensors and containers
            raise CheckpointError(
                f"{path}: cannot read checkpoint: it stores Python objects besides tensors, and edgesr never runs "
                "code from a model file (weights_only=True); re-save it with torch.save(model.state_dict(), path)"
            ) from None
        raise CheckpointError(f"{path}: cannot read checkpoint (damaged pickle: {e})") from None
    except Exception as e:  # truncated zips and damaged records raise many types
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None


def _back_to_official_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Enough of the official naming for :func:`infer_config` to read an edgesr-named state dict."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^layers\.(\d+)\.blocks\.", r"layers.\1.residual_group.blocks.", k).replace("patch_norm.", "patch_embed.norm.")
        out[k] = v
    return out
