"""The model descriptor every exported file carries (spandrel-style): what a runtime needs to drive the file
without knowing the model: scale, tile, window / size multiple, config, QuantConfig, version."""

from __future__ import annotations

import json

from edgesr import __version__
from edgesr.models.swinir import SwinIR


def descriptor(model: SwinIR, tile: tuple[int, int] | None, fmt: str) -> dict:
    cfg = model.config
    qc = getattr(model, "quant_config", None)
    return {
        "format": fmt,
        "edgesr_version": __version__,
        "arch": "swinir-light",
        "scale": cfg.scale,
        "tile": list(tile) if tile is not None else None,
        "window_size": cfg.window_size,
        "size_multiple": cfg.window_size,
        "in_channels": cfg.in_chans,
        "config": cfg.to_dict(),
        "quant_config": json.loads(qc.to_json()) if qc is not None else None,
    }
