"""2DQuant fake quantization: per-tensor asymmetric quantizers with learnable lower/upper bounds.

    v_c = clip(v, l, u);  s = (u - l) / (2^b - 1);  r = round((v_c - l) / s) in {0..2^b-1};  v_q = s * r + l

Rounding uses a straight-through estimator; the clip passes gradient to v inside [l, u], to l from values below
l and to u from values above u, so l and u also learn through s and the offset (the paper's Eq. 2).

:func:`quantize` turns an FP SwinIR into a fake-quantized copy (the FP model is untouched): every selected
Linear gets a weight and an input quantizer, every selected attention matmul a quantizer per operand.
"""

from __future__ import annotations

import copy
import fnmatch

import torch
import torch.nn.functional as F
from torch import nn

from edgesr.converter.config import QuantConfig, QuantConfigError
from edgesr.models.swinir import MatMul


def _fq_forward(v: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, levels: int) -> torch.Tensor:
    # Few in-place passes: this runs on every attention map, the largest tensors of the network.
    step = (upper - lower) / levels
    out = torch.clamp(v, lower, upper)
    return out.sub_(lower).div_(step).round_().mul_(step).add_(lower)


class _FakeQuantize(torch.autograd.Function):
    """Fused forward; closed-form backward (the same gradients as autograd through clip/STE-round):

    dq/dv = 1 inside [l, u];  dq/du = H(v - u) + e;  dq/dl = H(l - v) - e,  with e = r/L - (v_c - l)/(u - l).
    """

    @staticmethod
    def forward(ctx, v, lower, upper, levels):
        out = _fq_forward(v, lower, upper, levels)
        ctx.save_for_backward(v, lower, upper, out)
        ctx.levels = levels
        return out

    @staticmethod
    def backward(ctx, g):
        v, lower, upper, out = ctx.saved_tensors
        below, above = v < lower, v > upper
        rng = upper - lower
        # e = r/L - (vc - l)/(u - l) = (out - vc) / (u - l): the rounding residual in units of the range.
        vc = torch.clamp(v, lower, upper)
        e = (out - vc).div_(rng)
        ge = (g * e).sum()
        g_upper = g[above].sum() + ge
        g_lower = g[below].sum() - ge
        g_v = g.masked_fill(below | above, 0.0) if ctx.needs_input_grad[0] else None
        return g_v, g_lower.reshape(lower.shape), g_upper.reshape(upper.shape), None


def fake_quantize(v: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, bits: int) -> torch.Tensor:
    levels = 2**bits - 1
    if torch.is_grad_enabled() and (v.requires_grad or lower.requires_grad or upper.requires_grad):
        return _FakeQuantize.apply(v, lower, upper, levels)
    return _fq_forward(v, lower.detach(), upper.detach(), levels)


def quant_codes(v: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes r in [0, 2^b - 1] (int64) of ``v``; ``fake_quantize`` == codes * s + l."""
    step = (upper - lower) / (2**bits - 1)
    return torch.clamp(v, lower, upper).sub_(lower).div_(step).round_().long()


class FakeQuantizer(nn.Module):
    """One per-tensor quantizer. ``observer`` (calibration) sees the FP input; ``enabled=False`` passes it through."""

    def __init__(self, bits: int, name: str = "", one_sided: bool = False, is_weight: bool = False):
        super().__init__()
        self.bits, self.qname, self.one_sided, self.is_weight = bits, name, one_sided, is_weight
        self.lower = nn.Parameter(torch.tensor(-1.0))
        self.upper = nn.Parameter(torch.tensor(1.0))
        self.enabled = True
        self.observer = None

    def extra_repr(self) -> str:
        return f"{self.qname}, bits={self.bits}, one_sided={self.one_sided}"

    def set_bounds(self, lower: float, upper: float) -> None:
        if not upper > lower:
            upper = lower + 1e-8
        with torch.no_grad():
            self.lower.fill_(float(lower))
            self.upper.fill_(float(upper))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observer is not None:
            self.observer(self, x)
        if not self.enabled:
            return x
        return fake_quantize(x, self.lower, self.upper, self.bits)


class QuantLinear(nn.Module):
    """``Linear`` with a quantized input and a quantized weight (shares the FP weight and bias tensors)."""

    def __init__(self, linear: nn.Linear, bits: int, name: str, one_sided_input: bool):
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias
        self.weight_quant = FakeQuantizer(bits, f"{name}.weight", is_weight=True)
        self.input_quant = FakeQuantizer(bits, f"{name}.input", one_sided=one_sided_input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quant(x), self.weight_quant(self.weight), self.bias)


class QuantMatMul(nn.Module):
    """``a @ b`` with both operands quantized (Q·Kᵀ and softmax(attn)·V)."""

    def __init__(self, bits: int, name: str, one_sided_a: bool, one_sided_b: bool):
        super().__init__()
        self.a_quant = FakeQuantizer(bits, f"{name}.a", one_sided=one_sided_a)
        self.b_quant = FakeQuantizer(bits, f"{name}.b", one_sided=one_sided_b)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.a_quant(a) @ self.b_quant(b)


def _matches(name: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def quantize_(model: nn.Module, config: QuantConfig) -> nn.Module:
    """Insert fake quantizers in place (bounds uninitialised: run :func:`edgesr.converter.calibrate` next)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    matmuls = [n for n, m in model.named_modules() if isinstance(m, MatMul)]
    for pattern in (*config.linears, *config.matmuls):
        if not any(fnmatch.fnmatchcase(n, pattern) for n in linears + matmuls):
            raise QuantConfigError(f"layer pattern {pattern!r} matches no Linear or MatMul layer of the model")
    chosen = 0
    for name in linears:
        if _matches(name, config.linears) and not _matches(name, config.exclude):
            one_sided = _matches(f"{name}.input", config.one_sided)
            _set_submodule(model, name, QuantLinear(model.get_submodule(name), config.bits, name, one_sided))
            chosen += 1
    for name in matmuls:
        if _matches(name, config.matmuls) and not _matches(name, config.exclude):
            q = QuantMatMul(config.bits, name, _matches(f"{name}.a", config.one_sided), _matches(f"{name}.b", config.one_sided))
            _set_submodule(model, name, q)
            chosen += 1
    if not chosen:
        raise QuantConfigError("the configuration selects no layer to quantize")
    for n, p in model.named_parameters():
        p.requires_grad_(n.endswith((".lower", ".upper")))
    model.quant_config = config
    return model


def quantize(model: nn.Module, config: QuantConfig) -> nn.Module:
    """A fake-quantized copy of ``model``; the FP model and its weights are left untouched."""
    return quantize_(copy.deepcopy(model), config)


def quantizers(model: nn.Module) -> dict[str, FakeQuantizer]:
    return {m.qname: m for m in model.modules() if isinstance(m, FakeQuantizer)}


def bound_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for q in quantizers(model).values() for p in (q.lower, q.upper)]
