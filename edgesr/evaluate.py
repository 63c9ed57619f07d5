"""Benchmark evaluation: Y-PSNR / SSIM per image and per set, table + JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgesr.data.benchmark import SRPair, count_images, iter_pairs
from edgesr.data.imresize import bicubic_upscale, bicubic_y_protocol
from edgesr.data.io import to_tensor, to_uint8
from edgesr.errors import EdgesrError
from edgesr.metrics import psnr, ssim
from edgesr.progress import progress_bar


@dataclass
class Upscaler:
    name: str
    scale: int
    run: Callable[[np.ndarray], np.ndarray]  # (h, w, 3) uint8 -> (h*s, w*s, 3) uint8
    info: dict
    # What a benchmark pair is scored on: (output, reference, reference-is-gray). Default: run on the LR image.
    score_inputs: Callable[[SRPair], tuple[np.ndarray, np.ndarray, bool]] | None = None

    def scored(self, pair: SRPair) -> tuple[np.ndarray, np.ndarray, bool]:
        if self.score_inputs is not None:
            return self.score_inputs(pair)
        return self.run(pair.lr), pair.hr, pair.gray


def bicubic(scale: int) -> Upscaler:
    """Bicubic as the published baselines were measured (Y-channel protocol, see ``bicubic_y_protocol``)."""
    return Upscaler("bicubic", scale, lambda lr: bicubic_upscale(lr, scale), {"kind": "bicubic-y"},
                    score_inputs=lambda pair: (*bicubic_y_protocol(pair.hr, scale, pair.gray), False))


def bicubic_rgb(scale: int) -> Upscaler:
    """Bicubic enlargement of the LR RGB files, scored like a model's output."""
    return Upscaler("bicubic-rgb", scale, lambda lr: bicubic_upscale(lr, scale), {"kind": "bicubic-rgb"})


def torch_upscaler(model: torch.nn.Module, name: str, info: dict | None = None) -> Upscaler:
    from edgesr.models.swinir import run_padded

    def run(lr: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return to_uint8(run_padded(model, to_tensor(lr)))

    return Upscaler(name, model.scale, run, {"kind": "pytorch", **(info or {})})


def load_upscaler(spec: str, scale: int | None) -> Upscaler:
    """``bicubic`` (needs ``scale``), a zoo name, or a checkpoint path."""
    if spec in ("bicubic", "bicubic-rgb"):
        if scale is None:
            raise EdgesrError(f"--scale is required with --model {spec}")
        return bicubic(scale) if spec == "bicubic" else bicubic_rgb(scale)
    from edgesr.converter.artifact import is_artifact, load_artifact, read_artifact_metadata
    from edgesr.models.checkpoint import load_model
    from edgesr.models.zoo import resolve

    path, entry = resolve(spec)
    if path.suffix.lower() in (".pte", ".tflite", ".onnx"):
        raise EdgesrError(f"{path}: an exported file; this command takes a zoo name, a checkpoint or a quantized "
                          "artifact (run exported files with `edgesr upscale`, compare them with `edgesr parity`)")
    if path.suffix == ".safetensors" and is_artifact(path):
        model = load_artifact(path)
        if scale is not None and model.scale != scale:
            raise EdgesrError(f"{path}: artifact is x{model.scale}, but x{scale} was requested")
        meta = read_artifact_metadata(path)
        qc = meta["quant_config"]
        info = {"path": str(path), "kind": "fake-quant", "bits": qc["bits"], "init": qc["init"],
                "source": meta["provenance"].get("source")}
        return torch_upscaler(model, path.stem, info)
    model = load_model(path, scale=scale)
    info = {"path": str(path), "zoo": entry.name if entry else None}
    if entry and entry.expected_psnr:
        info["expected_psnr"] = entry.expected_psnr
    return torch_upscaler(model, entry.name if entry else path.name, info)


def evaluate(up: Upscaler, sets: list[str], data_root=None, quiet: bool = False, limit: int | None = None) -> dict:
    """Score ``up`` on benchmark sets; returns {"model", "scale", "sets": {set: {mean, images}}}."""
    result = {"model": up.name, "scale": up.scale, "info": up.info, "sets": {}}
    s = up.scale
    totals = {name: min(count_images(name, data_root), limit or 10**9) for name in sets}
    with progress_bar(f"eval {up.name} x{s}", total=sum(totals.values()), disable=quiet) as bar:
        for name in sets:
            rows = []
            for i, pair in enumerate(iter_pairs(name, s, data_root)):
                if limit is not None and i >= limit:
                    break
                sr, ref, gray = up.scored(pair)
                if sr.shape != ref.shape:
                    raise EdgesrError(f"{up.name}: output {sr.shape} for {pair.name}, expected {ref.shape}")
                rows.append(
                    {
                        "image": pair.name,
                        "psnr_y": psnr(sr, ref, border=s, gray=gray),
                        "ssim_y": ssim(sr, ref, border=s, gray=gray),
                        "gray": pair.gray,
                    }
                )
                bar.update(1, info=f"{name}/{pair.name}")
            result["sets"][name] = {
                "psnr_y": float(np.mean([r["psnr_y"] for r in rows])),
                "ssim_y": float(np.mean([r["ssim_y"] for r in rows])),
                "images": rows,
            }
    return result


def write_json(result: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(path)
