"""SwinIR-light written for export.

Same arithmetic as the reference SwinIR, restructured so exporters and quantizers see simple ops:

* q, k and v are three ``nn.Linear`` layers (2DQuant gives each its own quantizers; XNNPACK rejects the fused
  one after splitting);
* window partition / reverse use tensors of rank <= 4;
* the cyclic shift is slice + cat (no ``torch.roll``);
* the relative-position index is built once per window size and shared by all blocks; the attention mask is
  built once per (H, W) and shared too. Neither is saved in checkpoints.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean used by every SwinIR checkpoint


@dataclass(frozen=True)
class SwinIRConfig:
    """Hyper-parameters of a SwinIR-light network (defaults: the official light model)."""

    scale: int = 4
    embed_dim: int = 60
    depths: tuple[int, ...] = (6, 6, 6, 6)
    num_heads: tuple[int, ...] = (6, 6, 6, 6)
    window_size: int = 8
    mlp_ratio: float = 2.0
    in_chans: int = 3
    img_range: float = 1.0
    upsampler: str = "pixelshuffledirect"
    resi_connection: str = "1conv"
    # Training patch size of the official files (s64w8); informs the default export tile.
    img_size: int = 64
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if self.scale not in (1, 2, 3, 4, 8):
            raise ValueError(f"unsupported scale {self.scale}")
        if len(self.depths) != len(self.num_heads):
            raise ValueError("depths and num_heads must have the same length")
        if self.upsampler != "pixelshuffledirect" or self.resi_connection != "1conv":
            raise ValueError(
                "only SwinIR-light (upsampler='pixelshuffledirect', resi_connection='1conv') is supported, "
                f"got upsampler={self.upsampler!r}, resi_connection={self.resi_connection!r}"
            )
        for h in self.num_heads:
            if self.embed_dim % h:
                raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {h}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        d["depths"] = list(self.depths)
        d["num_heads"] = list(self.num_heads)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SwinIRConfig":
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SwinIR config keys: {sorted(unknown)}")
        d = dict(d)
        for key in ("depths", "num_heads"):
            if key in d:
                d[key] = tuple(int(v) for v in d[key])
        return cls(**d)


# ---------------------------------------------------------------------------------------------------------
# Window helpers (rank <= 4)


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B*nH*nW, ws*ws, C).

    Example, B=1, H=W=16, C=60, ws=8: view (2, 8, 2, 480) -> permute (2, 2, 8, 480) -> reshape (4, 64, 60).
    """
    b, h, w, c = x.shape
    x = x.reshape(b * (h // ws), ws, w // ws, ws * c)
    x = x.permute(0, 2, 1, 3)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """(B*nH*nW, ws*ws, C) -> (B, H, W, C); inverse of :func:`window_partition`.

    Example, H=W=16, C=60, ws=8: (4, 64, 60) -> view (2, 2, 8, 480) -> permute (2, 8, 2, 480) -> (1, 16, 16, 60).
    """
    c = windows.shape[-1]
    x = windows.reshape(-1, w // ws, ws, ws * c)
    x = x.permute(0, 2, 1, 3)
    return x.reshape(-1, h, w, c)


def cyclic_shift(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Same as ``torch.roll(x, (shift, shift), dims=(1, 2))`` for (B, H, W, C), built from slices and cat.

    Example, H=16, shift=-4: rows [4:16] then rows [0:4] (the same for columns).
    """
    h, w = x.shape[1], x.shape[2]
    sh, sw = shift % h, shift % w
    if sh:
        x = torch.cat((x[:, h - sh :], x[:, : h - sh]), dim=1)
    if sw:
        x = torch.cat((x[:, :, w - sw :], x[:, :, : w - sw]), dim=2)
    return x


_ON_DEVICE: dict = {}


def _cached_constant(build):
    """lru_cache for the attention's constant tensors, built outside inference mode: a tensor first made under
    ``torch.inference_mode()`` (an upscale) is an inference tensor, and a later training step in the same
    process could not save it for backward."""
    @functools.wraps(build)
    def plain(*args):
        with torch.inference_mode(False):
            return build(*args)
    return plain


def _on_device(t: torch.Tensor, key: tuple, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``t`` on an accelerator, copied once per (key, device, dtype): a per-forward host-to-device copy would
    stall the launch queue. CPU tensors and traced graphs (export, compile) take ``t`` as it is."""
    if device.type == "cpu" or torch.compiler.is_compiling():
        return t.to(device, dtype) if dtype is not None else t.to(device)
    k = (key, device, dtype)
    if k not in _ON_DEVICE:
        if len(_ON_DEVICE) >= 64:  # masks of many image sizes (a 500x500 one is 64 MB): keep memory bounded
            _ON_DEVICE.clear()
        with torch.inference_mode(False):  # cached across calls: see _cached_constant
            _ON_DEVICE[k] = t.to(device, dtype) if dtype is not None else t.to(device)
    return _ON_DEVICE[k]


@functools.lru_cache(maxsize=None)
@_cached_constant
def relative_position_index(ws: int) -> torch.Tensor:
    """(ws*ws, ws*ws) index into the (2ws-1)^2 bias table; built once per window size."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return (rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]).contiguous()


@functools.lru_cache(maxsize=32)
@_cached_constant
def shifted_window_regions(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, ws*ws) region label of every token of every shifted window; tokens attend within one label."""
    region = torch.zeros(1, h, w, 1)
    bounds = ((0, -ws), (-ws, -shift), (-shift, None))
    label = 0
    for hs in bounds:
        for wsl in bounds:
            region[:, slice(*hs), slice(*wsl), :] = label
            label += 1
    return window_partition(region, ws).squeeze(-1)


@functools.lru_cache(maxsize=32)
@_cached_constant
def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, ws*ws, ws*ws) additive mask (0 or -100) for shifted windows of an h x w feature map."""
    ids = shifted_window_regions(h, w, ws, shift)
    diff = ids.unsqueeze(1) - ids.unsqueeze(2)
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


# ---------------------------------------------------------------------------------------------------------
# Building blocks


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        # Matmul hooks: identity in FP, replaced by quantized versions in the converter.
        self.qk_matmul = MatMul()
        self.av_matmul = MatMul()

    def relative_bias(self) -> torch.Tensor:
        n = self.window_size * self.window_size
        ws, dev = self.window_size, self.relative_position_bias_table.device
        idx = _on_device(relative_position_index(ws), ("rel_index", ws), dev)
        bias = self.relative_position_bias_table[idx.reshape(-1)].reshape(n, n, self.num_heads)
        return bias.permute(2, 0, 1)  # (heads, N, N)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        hd = c // self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(bw, n, self.num_heads, hd).permute(0, 2, 1, 3)  # (Bw, h, N, hd)

        q = heads(self.q(x)) * self.scale
        k = heads(self.k(x))
        v = heads(self.v(x))
        attn = self.qk_matmul(q, k.transpose(-2, -1)) + self.relative_bias().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.reshape(bw // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.reshape(bw, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        out = self.av_matmul(attn, v).permute(0, 2, 1, 3).reshape(bw, n, c)
        return self.proj(out)


class MatMul(nn.Module):
    """``a @ b`` as a module, so quantizers can wrap both operands of the attention matmuls."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.window_size, self.shift = window_size, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        h, w = hw
        b, _, c = x.shape
        ws, shift = self.window_size, self.shift
        y = self.norm1(x).reshape(b, h, w, c)
        mask = None
        if shift:
            y = cyclic_shift(y, -shift)
            mask = _on_device(shifted_window_mask(h, w, ws, shift), ("mask", h, w, ws, shift), x.device, x.dtype)
        y = self.attn(window_partition(y, ws), mask)
        y = window_reverse(y, ws, h, w)
        if shift:
            y = cyclic_shift(y, shift)
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class ResidualGroup(nn.Module):
    """RSTB: a stack of Swin blocks, a 3x3 conv, and a long residual."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio)
            for i in range(depth)
        )
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)
        self.body_output = nn.Identity()  # tap on the blocks' output, used by feature distillation

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        y = x
        for blk in self.blocks:
            y = blk(y, hw)
        y = self.body_output(y)
        b, _, c = y.shape
        y = self.conv(y.transpose(1, 2).reshape(b, c, *hw))
        return y.flatten(2).transpose(1, 2) + x


class SwinIR(nn.Module):
    """SwinIR-light. Input: (B, 3, H, W) in [0, 1] with H, W multiples of ``window_size``
    (use :meth:`pad_to_window` / :func:`edgesr.models.run_padded` for other sizes)."""

    def __init__(self, config: SwinIRConfig | None = None, **overrides):
        super().__init__()
        if config is None:
            config = SwinIRConfig(**overrides)
        elif overrides:
            config = SwinIRConfig.from_dict({**config.to_dict(), **overrides})
        self.config = cfg = config
        dim = cfg.embed_dim
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(cfg.in_chans, dim, 3, 1, 1)
        self.patch_norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            ResidualGroup(dim, d, h, cfg.window_size, cfg.mlp_ratio) for d, h in zip(cfg.depths, cfg.num_heads)
        )
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = nn.Conv2d(dim, dim, 3, 1, 1)
        self.upsample = nn.Sequential(nn.Conv2d(dim, cfg.in_chans * cfg.scale**2, 3, 1, 1), nn.PixelShuffle(cfg.scale))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def window_size(self) -> int:
        return self.config.window_size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.patch_norm(x.flatten(2).transpose(1, 2))
        for layer in self.layers:
            y = layer(y, (h, w))
        y = self.norm(y)
        return y.transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ws = self.window_size
        if h % ws or w % ws:
            raise ValueError(f"input size {h}x{w} is not a multiple of the window size {ws}; pad it first")
        return self.upsample(self.upsampler_input(x)) / self.config.img_range + self.mean.to(x.dtype)

    def upsampler_input(self, x: torch.Tensor) -> torch.Tensor:
        """The features the upsampler maps to the output (deep features plus the shallow skip), from the image."""
        x = self.conv_first((x - self.mean.to(x.dtype)) * self.config.img_range)
        return self.conv_after_body(self.forward_features(x)) + x


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom/right of (B, C, H, W) to a multiple by mirroring, as SwinIR's test script does
    (concatenate the flipped image, then crop)."""
    h, w = x.shape[-2:]
    th, tw = h + (-h) % multiple, w + (-w) % multiple
    while x.shape[2] < th:  # tiny images need more than one mirror round
        x = torch.cat([x, torch.flip(x, [2])], 2)[:, :, :th]
    while x.shape[3] < tw:
        x = torch.cat([x, torch.flip(x, [3])], 3)[:, :, :, :tw]
    return x


@torch.no_grad()
def run_padded(model: nn.Module, lr: torch.Tensor, multiple: int | None = None, scale: int | None = None) -> torch.Tensor:
    """Run ``model`` on an image of any size: mirror-pad to the window multiple, run, crop back."""
    multiple = multiple or model.window_size
    scale = scale or model.scale
    h, w = lr.shape[-2:]
    out = model(pad_to_multiple(lr, multiple))
    return out[..., : h * scale, : w * scale]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_estimate(cfg: SwinIRConfig, h: int, w: int) -> float:
    """Multiply-accumulates x2 of the linear, matmul and conv layers for an h x w input (FLOPs)."""
    d, hw, n = cfg.embed_dim, h * w, cfg.window_size**2
    per_block = hw * (4 * d * d + 2 * d * int(d * cfg.mlp_ratio)) + 2 * hw * n * d
    conv = hw * 9 * d * (cfg.in_chans + d * (len(cfg.depths) + 1) + cfg.in_chans * cfg.scale**2)
    return 2.0 * (per_block * sum(cfg.depths) + conv)


__all__ = [
    "SwinIR",
    "SwinIRConfig",
    "window_partition",
    "window_reverse",
    "cyclic_shift",
    "relative_position_index",
    "shifted_window_regions",
    "shifted_window_mask",
    "pad_to_multiple",
    "run_padded",
    "count_parameters",
    "flops_estimate",
]
