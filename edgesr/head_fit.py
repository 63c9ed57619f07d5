"""Least-squares fit of SwinIR-light's upsampler on a frozen body (the start of a run that takes another
scale's body).

``pixelshuffledirect`` ends in one 3x3 conv (dim -> 3 s^2 channels) and a pixel shuffle, so the network's output
is linear in that conv's weights and bias. For a fixed body, the conv with the least squared error on a set of
crops is a ridge regression on the 3x3 neighbourhoods of the body's features, solved once in closed form: the
new head starts at its optimum for the transferred body instead of at random weights that the body would first
have to be dragged along with.

Example, an x2 head on an x4 body (dim 60): an LR crop of 96 x 96 gives features z of 60 x 96 x 96; unfolded,
540 x 9216 neighbourhoods plus a row of ones (the bias); its HR crop, minus the RGB mean and pixel-unshuffled by 2,
gives 12 x 9216 targets. Each crop adds to the 541 x 541 Gram matrix and the 541 x 12 cross term; the solve gives
the 12 x 60 x 3 x 3 weights and 12 biases.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edgesr.models.swinir import SwinIR


def _crop(pair, side: int, window: int, rng: np.random.Generator, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random LR crop (at most side x side, a multiple of the window) and its HR crop, as float NCHW in [0, 1]."""
    h = min(side, pair.lr.shape[0] // window * window)
    w = min(side, pair.lr.shape[1] // window * window)
    y = int(rng.integers(0, pair.lr.shape[0] - h + 1))
    x = int(rng.integers(0, pair.lr.shape[1] - w + 1))
    lr = pair.lr[y : y + h, x : x + w]
    hr = pair.hr[y * scale : (y + h) * scale, x * scale : (x + w) * scale]
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255.0  # noqa: E731
    return to(lr), to(hr)


@torch.no_grad()
def fit_upsampler(model: SwinIR, pairs, crops: int = 64, side: int = 96, seed: int = 0, ridge: float = 1e-4,
                  progress=None) -> dict:
    """Set ``model.upsample[0]`` to the ridge-regression optimum over ``crops`` random crops of ``pairs``
    (``PairImage`` list, uint8 LR/HR at the model's scale); the rest of the model is not changed.
    ``ridge`` is relative to the mean diagonal of the Gram matrix. Returns the fit's training PSNR (dB, RGB,
    no border) before and after, and the number of pixels it saw."""
    conv, scale, window = model.upsample[0], model.scale, model.window_size
    usable = [p for p in pairs if min(p.lr.shape[:2]) >= window]
    if not usable:
        raise ValueError(f"no image has an LR side of at least {window} px")
    was_training = model.training
    model.eval()
    dev = conv.weight.device
    rng = np.random.default_rng(seed)
    taps = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    gram = torch.zeros(taps + 1, taps + 1, dtype=torch.float64)
    cross = torch.zeros(taps + 1, conv.out_channels, dtype=torch.float64)
    target_sq, pixels = 0.0, 0
    mean, img_range = model.mean.cpu(), model.config.img_range
    for _ in range(crops):
        lr, hr = _crop(usable[int(rng.integers(len(usable)))], side, window, rng, scale)
        z = model.upsampler_input(lr.to(dev)).cpu()
        u = F.unfold(z, conv.kernel_size, padding=conv.padding)[0].double()
        u = torch.cat([u, u.new_ones(1, u.shape[1])])
        t = F.pixel_unshuffle((hr - mean) * img_range, scale)[0].reshape(conv.out_channels, -1).double()
        gram += u @ u.T
        cross += u @ t.T
        target_sq += float((t * t).sum())
        pixels += t.numel()
        if progress is not None:
            progress()

    def sq_err(w: torch.Tensor) -> float:  # sum over the crops of |u^T w - t|^2, from the accumulated moments
        return target_sq - 2 * float((w * cross).sum()) + float((w * (gram @ w)).sum())

    old = torch.cat([conv.weight.detach().cpu().reshape(conv.out_channels, -1), conv.bias.detach().cpu()[:, None]], 1)
    reg = ridge * float(gram.diagonal().mean()) * torch.eye(taps + 1, dtype=torch.float64)
    new = torch.linalg.solve(gram + reg, cross)  # (taps + 1) x out
    conv.weight.copy_(new[:-1].T.reshape(conv.weight.shape).to(conv.weight.dtype))
    conv.bias.copy_(new[-1].to(conv.bias.dtype))
    model.train(was_training)
    to_psnr = lambda e: float(10 * np.log10(img_range**2 / max(e / pixels, 1e-20)))  # noqa: E731
    return {"crops": crops, "ridge": ridge, "pixels": pixels, "psnr_before": to_psnr(sq_err(old.T.double())),
            "psnr_after": to_psnr(sq_err(new))}
