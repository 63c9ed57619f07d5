"""Calibration data and bound initialisation of a fake-quantized model."""

from __future__ import annotations

from pathlib import Path

import torch

from edgesr.converter import bounds
from edgesr.converter.config import QuantConfig, QuantConfigError
from edgesr.converter.quant import FakeQuantizer, quantizers
from edgesr.data.patches import PatchSampler, build_pairs, split_holdout
from edgesr.data.io import list_images
from edgesr.progress import progress_bar


def calibration_sampler(folders: list[str | Path], scale: int, patch: int, batch: int, seed: int = 0) -> PatchSampler:
    """LR/HR patches from the training split of the calibration folders (the held-out split stays unseen)."""
    files: list[Path] = []
    for folder in folders:
        files += list_images(folder)
    pairs = build_pairs(split_holdout(files)[0], scale)
    try:
        return PatchSampler(pairs, scale, patch, batch, seed=seed)
    except ValueError:
        raise QuantConfigError(
            f"no calibration image is large enough for {patch}x{patch} LR patches at x{scale} "
            f"(needs HR sides >= {patch * scale} px)"
        ) from None


def calibration_batch(folders, scale: int, config: QuantConfig) -> torch.Tensor:
    """The deterministic DOBI batch: ``calib_images`` LR patches of ``calib_patch`` px."""
    return calibration_sampler(folders, scale, config.calib_patch, config.calib_images, config.seed).batch_at(0)[0]


def _init_bounds(q: FakeQuantizer, x: torch.Tensor, config: QuantConfig) -> dict:
    if config.init == "minmax":
        r = bounds.minmax(x)
    elif config.init == "percentile":
        r = bounds.percentile(x, config.percentile)
    else:
        r = bounds.dobi(x, q.bits, config.dobi_candidates, one_sided=q.one_sided and config.dobi_one_sided)
    q.set_bounds(r["lower"], r["upper"])
    return {"method": config.init, **r, "one_sided": bool(q.one_sided and config.dobi_one_sided and config.init == "dobi")}


@torch.no_grad()
def calibrate(qmodel: torch.nn.Module, lr_batch: torch.Tensor, config: QuantConfig, quiet: bool = True) -> dict:
    """Initialise every quantizer's bounds from FP tensors (one forward pass with quantization off).

    Returns a per-quantizer report (method, bounds, one-sided choice, DOBI MSE vs MinMax MSE).
    """
    qs = quantizers(qmodel)
    report: dict[str, dict] = {}
    with progress_bar(f"init bounds ({config.init})", total=len(qs), disable=quiet) as bar:

        def observe(q: FakeQuantizer, x: torch.Tensor) -> None:
            report[q.qname] = _init_bounds(q, x, config)
            q.observer = None  # one pass: the first call sees the whole batch
            bar.update(1, info=q.qname)

        for q in qs.values():
            q.enabled = False
            if q.is_weight:
                report[q.qname] = _init_bounds(q, q_weight(qmodel, q), config)
                bar.update(1, info=q.qname)
            else:
                q.observer = observe
        try:
            qmodel.eval()
            qmodel(lr_batch)
        finally:
            for q in qs.values():
                q.enabled, q.observer = True, None
    missing = [n for n in qs if n not in report]
    if missing:
        raise RuntimeError(f"quantizers not reached by the calibration pass: {missing[:3]}")
    return report


def q_weight(qmodel: torch.nn.Module, q: FakeQuantizer) -> torch.Tensor:
    owner = qmodel.get_submodule(q.qname.rsplit(".", 1)[0])
    return owner.weight.detach()
