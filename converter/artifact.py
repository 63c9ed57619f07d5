"""The quantized artifact: one ``.safetensors`` file.

Tensors:
* ``<linear>.weight.codes``: the quantized weight's b-bit codes in row-major order, bit-packed
  (:mod:`edgesr.converter.pack`), uint8;
* ``quantizers.bounds``: (N, 2) fp32, the learned (lower, upper) of every quantizer, in the order of the
  ``edgesr.quantizers`` metadata list; the scale is (upper - lower) / (2^b - 1) and the real-valued zero
  point is -lower / scale;
* every other parameter (convs, LayerNorms, biases, relative-position tables) in fp32.

Metadata: ``edgesr.format`` = ``2dquant/1``, the model config, the QuantConfig, ``edgesr.quantizers``
(names), ``edgesr.weight_shapes``, and provenance (source checkpoint and its sha256, calibration data,
per-quantizer DOBI choices, DQC history, edgesr version).
Loading rebuilds the fake-quant model: weights are decoded as codes * scale + lower, which re-quantize to the
same codes, so outputs are bit-for-bit those of the model that was saved.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from edgesr import __version__
from edgesr.converter.config import QuantConfig
from edgesr.converter.pack import pack_codes, unpack_codes
from edgesr.converter.quant import FakeQuantizer, QuantLinear, quant_codes, quantize_, quantizers
from edgesr.errors import CheckpointError
from edgesr.models.checkpoint import write_safetensors
from edgesr.models.swinir import SwinIR, SwinIRConfig

FORMAT = "2dquant/1"


def save_artifact(qmodel: SwinIR, path: str | Path, provenance: dict | None = None) -> dict:
    """Write the artifact atomically; returns a size report (bytes of the file vs the FP32 parameters)."""
    config: QuantConfig = qmodel.quant_config
    tensors: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for name, mod in qmodel.named_modules():
        if isinstance(mod, QuantLinear):
            q = mod.weight_quant
            codes = quant_codes(mod.weight.detach(), q.lower.detach(), q.upper.detach(), q.bits).numpy()
            tensors[f"{name}.weight.codes"] = torch.from_numpy(pack_codes(codes, q.bits))
            shapes[f"{name}.weight"] = list(mod.weight.shape)
    qs = quantizers(qmodel)
    names = list(qs)
    tensors["quantizers.bounds"] = torch.tensor([[float(qs[n].lower.detach()), float(qs[n].upper.detach())] for n in names], dtype=torch.float32)
    for key, value in qmodel.state_dict().items():
        if key in shapes or key.endswith((".lower", ".upper")):
            continue
        tensors[key] = value.detach().float().contiguous().clone()
    meta = {
        "edgesr.format": FORMAT,
        "edgesr.config": json.dumps(qmodel.config.to_dict(), sort_keys=True),
        "edgesr.quant_config": config.to_json(),
        "edgesr.quantizers": json.dumps(names),
        "edgesr.weight_shapes": json.dumps(shapes, sort_keys=True),
        "edgesr.provenance": json.dumps({"edgesr_version": __version__, **(provenance or {})}, sort_keys=True),
    }
    path = write_safetensors(tensors, path, meta)
    fp32_bytes = 4 * sum(p.numel() for n, p in qmodel.named_parameters() if not n.endswith((".lower", ".upper")))
    return {"artifact_bytes": path.stat().st_size, "fp32_param_bytes": fp32_bytes,
            "ratio": path.stat().st_size / fp32_bytes}


def is_artifact(path: str | Path) -> bool:
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("edgesr.format") == FORMAT
    except (SafetensorError, OSError):
        return False


def read_artifact_metadata(path: str | Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    return {
        "quantizers": json.loads(meta["edgesr.quantizers"]),
        "weight_shapes": json.loads(meta["edgesr.weight_shapes"]),
        "config": json.loads(meta["edgesr.config"]),
        "quant_config": json.loads(meta["edgesr.quant_config"]),
        "provenance": json.loads(meta.get("edgesr.provenance", "{}")),
    }


def load_artifact(path: str | Path) -> SwinIR:
    """Rebuild the fake-quantized model stored in an artifact."""
    path = Path(path)
    if not is_artifact(path):
        raise CheckpointError(f"{path}: not an edgesr quantized artifact (format {FORMAT})")
    meta = read_artifact_metadata(path)
    model = SwinIR(SwinIRConfig.from_dict(meta["config"]))
    qconfig = QuantConfig.from_dict(meta["quant_config"])
    quantize_(model, qconfig)
    tensors = load_file(str(path))
    qs = quantizers(model)
    names, shapes = meta["quantizers"], meta["weight_shapes"]
    if sorted(names) != sorted(qs):
        raise CheckpointError(f"{path}: quantizer list does not match its QuantConfig")
    bounds = tensors.pop("quantizers.bounds")
    module_path = {m.qname: path for path, m in model.named_modules() if isinstance(m, FakeQuantizer)}
    index = {name: i for i, name in enumerate(names)}
    state = {}
    for name, i in index.items():
        state[f"{module_path[name]}.lower"] = bounds[i, 0].clone()
        state[f"{module_path[name]}.upper"] = bounds[i, 1].clone()
    for key, value in tensors.items():
        if key.endswith(".weight.codes"):
            name = key[: -len(".codes")]
            q = qs[name]
            lower, upper = bounds[index[name]]
            codes = unpack_codes(value.numpy(), q.bits, int(np.prod(shapes[name])))
            step = (upper - lower) / (2**q.bits - 1)
            state[name] = torch.from_numpy(codes.astype(np.float32)).reshape(shapes[name]) * step + lower
        else:
            state[key] = value
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise CheckpointError(f"{path}: artifact lacks {sorted(missing)[0]!r}")
    model.load_state_dict(state, strict=True)
    return model.eval()
