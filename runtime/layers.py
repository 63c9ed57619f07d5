"""Per-layer parity between two executions of one quantized model: the fake-quant PyTorch model and the same
model with every quantized layer run by the native integer kernels (what the INT4 delegates execute).

The first layer whose outputs differ beyond float rounding is where two backends diverge; later layers
inherit the difference.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from edgesr import native
from edgesr.converter.pack import pack_codes
from edgesr.converter.quant import QuantLinear, QuantMatMul, quant_codes


def _b(q) -> tuple[float, float]:
    return float(q.lower.detach()), float(q.upper.detach())


class NativeLinear(nn.Module):
    def __init__(self, layer: QuantLinear, threads: int = 1):
        super().__init__()
        w = layer.weight.detach()
        wl, wu = _b(layer.weight_quant)
        xl, xu = _b(layer.input_quant)
        bits = layer.weight_quant.bits
        codes = quant_codes(w, torch.tensor(wl), torch.tensor(wu), bits).numpy()
        bias = None if layer.bias is None else layer.bias.detach().numpy()
        self.k = native.QLinear(pack_codes(codes, bits), w.shape[0], w.shape[1], bits, wl, wu, xl, xu, bias)
        self.threads = threads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.k.run(x.detach().numpy(), threads=self.threads))


class NativeMatMul(nn.Module):
    def __init__(self, layer: QuantMatMul, threads: int = 1):
        super().__init__()
        self.a, self.b, self.bits = _b(layer.a_quant), _b(layer.b_quant), layer.a_quant.bits
        self.threads = threads

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = native.qbmm(a.detach().contiguous().numpy(), b.detach().contiguous().numpy(), False, *self.a, *self.b,
                          self.bits, threads=self.threads)
        return torch.from_numpy(out)


def integer_model(qmodel: nn.Module, threads: int = 1) -> nn.Module:
    """A copy of a fake-quant model whose quantized layers run on the native integer kernels."""
    m = copy.deepcopy(qmodel).eval()
    for name, mod in list(m.named_modules()):
        if isinstance(mod, (QuantLinear, QuantMatMul)):
            parent, _, leaf = name.rpartition(".")
            new = NativeLinear(mod, threads) if isinstance(mod, QuantLinear) else NativeMatMul(mod, threads)
            setattr(m.get_submodule(parent) if parent else m, leaf, new)
    return m


def _capture(model: nn.Module, x: torch.Tensor, kinds) -> tuple[dict[str, np.ndarray], np.ndarray]:
    outs: dict[str, np.ndarray] = {}
    hooks = [mod.register_forward_hook(lambda _m, _i, o, n=name: outs.__setitem__(n, o.detach().numpy().copy()))
             for name, mod in model.named_modules() if isinstance(mod, kinds)]
    try:
        with torch.no_grad():
            y = model(x).numpy()
    finally:
        for h in hooks:
            h.remove()
    return outs, y


def compare_layers(qmodel: nn.Module, x: torch.Tensor, threads: int = 1) -> list[dict]:
    """Rows in execution order: layer name, max |a - b|, relative L2 error, for fake-quant a vs integer b."""
    a, ya = _capture(qmodel, x, (QuantLinear, QuantMatMul))
    b, yb = _capture(integer_model(qmodel, threads), x, (NativeLinear, NativeMatMul))
    rows = []
    for name in a:
        d = a[name] - b[name]
        rows.append({"layer": name, "max_abs": float(np.abs(d).max()),
                     "rel_l2": float(np.linalg.norm(d) / max(np.linalg.norm(a[name]), 1e-12))})
    d = ya - yb
    rows.append({"layer": "output", "max_abs": float(np.abs(d).max()),
                 "rel_l2": float(np.linalg.norm(d) / max(np.linalg.norm(ya), 1e-12))})
    return rows
