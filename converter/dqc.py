"""DQC: distillation quantization calibration. Only the clipping bounds train; the FP model is the teacher.

Loss = L1(student output, teacher output)
     + lambda * mean over residual groups of mean over samples of || f_s/||f_s|| - f_t/||f_t|| ||^2

Each sample's feature map (its blocks' output before the group's conv) is normalised by its own L2 norm, and
compared with the same sample of the teacher only. The squared distance of unit vectors is 2 - 2 cos, so the
feature term is on the scale of the output L1 term. Adam, cosine schedule; LR patches only (no HR).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import torch

from edgesr.converter.config import DQCConfig
from edgesr.errors import EdgesrError
from edgesr.converter.quant import bound_parameters
from edgesr.progress import progress_bar


class FeatureTaps:
    """Collects each residual group's blocks output (``layers[i].body_output``) during a forward pass."""

    def __init__(self, model: torch.nn.Module):
        self.features: list[torch.Tensor] = []
        self._handles = [
            layer.body_output.register_forward_hook(lambda _m, _i, out: self.features.append(out))
            for layer in model.layers
        ]

    def pop(self) -> list[torch.Tensor]:
        out, self.features = self.features, []
        return out

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def feature_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    terms = []
    for fs, ft in zip(student, teacher):
        fs, ft = fs.flatten(1), ft.flatten(1)  # (B, HW*C): one vector per sample
        fs = fs / fs.norm(dim=1, keepdim=True).clamp_min(1e-12)
        ft = ft / ft.norm(dim=1, keepdim=True).clamp_min(1e-12)
        terms.append(((fs - ft) ** 2).sum(1).mean())
    return torch.stack(terms).mean()


def distillation_loss(student, teacher, lr_img, feature_weight, s_taps: FeatureTaps, t_taps: FeatureTaps):
    with torch.no_grad():
        t_out = teacher(lr_img)
    t_feats = t_taps.pop()
    s_out = student(lr_img)
    s_feats = s_taps.pop()
    out_l1 = (s_out - t_out).abs().mean()
    feat = feature_loss(s_feats, t_feats)
    return out_l1 + feature_weight * feat, out_l1.item(), feat.item()


def cosine_lr(base: float, it: int, total: int) -> float:
    return 0.5 * base * (1 + math.cos(math.pi * it / max(1, total)))


def run_dqc(student: torch.nn.Module, teacher: torch.nn.Module, sampler, cfg: DQCConfig,
            state_path: str | Path | None = None, quiet: bool = False, save_every: int = 20,
            stop_after: int | None = None) -> dict:
    """Train the bounds of ``student`` for ``cfg.iterations``; resumes from ``state_path`` if it exists."""
    params = bound_parameters(student)
    for p in student.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    teacher.eval()
    student.eval()  # no dropout/BN in SwinIR; eval keeps the graph identical to inference
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999))
    start, history = 0, []
    # What this run starts from: the DQC settings and the initial bounds (which the FP model, the quantizer
    # config and the calibration data all shape). A saved state of any other run is refused, never resumed.
    qcfg = getattr(student, "quant_config", None)
    settings = {"dqc": cfg.__dict__, "quant": qcfg.to_dict() if qcfg is not None else None}
    run_key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()
                             + b"".join(p.detach().float().cpu().numpy().tobytes() for p in params)).hexdigest()
    state_path = Path(state_path) if state_path else None
    if state_path and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        if st.get("run_key") != run_key:
            raise EdgesrError(f"{state_path} holds the DQC state of another run (another model, quantizer config, "
                              "calibration set or DQC setting); use another --work-dir or delete it")
        with torch.no_grad():
            for p, v in zip(params, st["bounds"]):
                p.copy_(v)
        opt.load_state_dict(st["optimizer"])
        start, history = st["iteration"], st["history"]
    s_taps, t_taps = FeatureTaps(student), FeatureTaps(teacher)
    t0 = time.time()
    try:
        with progress_bar("DQC", total=cfg.iterations, completed=start, disable=quiet) as bar:
            for it in range(start, cfg.iterations):
                for g in opt.param_groups:
                    g["lr"] = cosine_lr(cfg.lr, it, cfg.iterations)
                lr_img, _ = sampler.batch_at(it)
                loss, out_l1, feat = distillation_loss(student, teacher, lr_img, cfg.feature_weight, s_taps, t_taps)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():  # keep every quantizer's range non-empty
                    for lo, hi in zip(params[0::2], params[1::2]):
                        if hi <= lo:
                            hi.copy_(lo + 1e-6)
                history.append({"iteration": it + 1, "loss": loss.item(), "out_l1": out_l1, "feat": feat})
                bar.update(1, info=f"loss {loss.item():.5f}")
                if state_path and ((it + 1) % save_every == 0 or it + 1 == cfg.iterations):
                    tmp = state_path.with_suffix(".tmp")
                    torch.save({"bounds": [p.detach().clone() for p in params], "optimizer": opt.state_dict(),
                                "iteration": it + 1, "history": history, "run_key": run_key}, tmp)
                    tmp.replace(state_path)
                if stop_after is not None and it + 1 - start >= stop_after:
                    break
    finally:
        s_taps.close()
        t_taps.close()
        for p in params:
            p.requires_grad_(False)
    return {"iterations": cfg.iterations, "seconds": time.time() - t0, "history": history}

