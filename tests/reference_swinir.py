"""A plain SwinIR-light written the straightforward way, as an independent reference for the tests.

It follows the published architecture literally: fused qkv Linear, ``torch.roll`` for the cyclic shift,
6-D window partition, per-block stored ``relative_position_index`` and ``attn_mask`` buffers, and the
official parameter names (``layers.i.residual_group.blocks.j``, ``patch_embed.norm``), so its state dict has
the layout of the official checkpoint files.
"""

from __future__ import annotations

import torch
from torch import nn

MEAN = (0.4488, 0.4371, 0.4040)


def ref_window_partition(x, ws):
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)


def ref_window_reverse(windows, ws, h, w):
    b = int(windows.shape[0] / (h * w / ws / ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


def ref_mask(h, w, ws, shift):
    img = torch.zeros((1, h, w, 1))
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    mw = ref_window_partition(img, ws).view(-1, ws * ws)
    m = mw.unsqueeze(1) - mw.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


class RefAttention(nn.Module):
    def __init__(self, dim, ws, heads):
        super().__init__()
        self.ws, self.heads = ws, heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * ws - 1) ** 2, heads) * 0.02)
        ch = torch.arange(ws)
        coords = torch.stack(torch.meshgrid([ch, ch], indexing="ij"))
        flat = torch.flatten(coords, 1)
        rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
        rel[:, :, 0] += ws - 1
        rel[:, :, 1] += ws - 1
        rel[:, :, 0] *= 2 * ws - 1
        self.register_buffer("relative_position_index", rel.sum(-1))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, n, n)
        attn = attn.softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class RefMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class RefBlock(nn.Module):
    def __init__(self, dim, heads, ws, shift, mlp_ratio, res):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = RefAttention(dim, ws, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = RefMlp(dim, int(dim * mlp_ratio))
        self.res = res
        self.register_buffer("attn_mask", ref_mask(res, res, ws, shift) if shift else None)

    def forward(self, x, size):
        h, w = size
        b, _, c = x.shape
        sc = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        win = ref_window_partition(x, self.ws).view(-1, self.ws * self.ws, c)
        mask = None
        if self.shift:
            mask = self.attn_mask if (h, w) == (self.res, self.res) else ref_mask(h, w, self.ws, self.shift)
        out = self.attn(win, mask).view(-1, self.ws, self.ws, c)
        x = ref_window_reverse(out, self.ws, h, w)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = sc + x.view(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class RefBasicLayer(nn.Module):
    def __init__(self, dim, depth, heads, ws, mlp_ratio, res):
        super().__init__()
        self.blocks = nn.ModuleList(
            RefBlock(dim, heads, ws, 0 if i % 2 == 0 else ws // 2, mlp_ratio, res) for i in range(depth)
        )

    def forward(self, x, size):
        for blk in self.blocks:
            x = blk(x, size)
        return x


class RefRSTB(nn.Module):
    def __init__(self, dim, depth, heads, ws, mlp_ratio, res):
        super().__init__()
        self.residual_group = RefBasicLayer(dim, depth, heads, ws, mlp_ratio, res)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x, size):
        b, _, c = x.shape
        y = self.residual_group(x, size).transpose(1, 2).view(b, c, *size)
        return self.conv(y).flatten(2).transpose(1, 2) + x


class RefPatchEmbed(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)


class RefSwinIR(nn.Module):
    def __init__(self, scale=4, dim=60, depths=(6, 6, 6, 6), heads=(6, 6, 6, 6), ws=8, mlp_ratio=2.0, img_size=64):
        super().__init__()
        self.scale, self.ws = scale, ws
        self.conv_first = nn.Conv2d(3, dim, 3, 1, 1)
        self.patch_embed = RefPatchEmbed(dim)
        self.layers = nn.ModuleList(RefRSTB(dim, d, h, ws, mlp_ratio, img_size) for d, h in zip(depths, heads))
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = nn.Conv2d(dim, dim, 3, 1, 1)
        self.upsample = nn.Sequential(nn.Conv2d(dim, 3 * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))
        self.register_buffer("mean", torch.Tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        # Non-trivial LayerNorm parameters so a swapped or dropped norm would show.
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                nn.init.normal_(m.weight, 1.0, 0.1)
                nn.init.normal_(m.bias, 0.0, 0.1)

    def forward(self, x):
        h, w = x.shape[2:]
        x = x - self.mean
        x = self.conv_first(x)
        feat = self.patch_embed.norm(x.flatten(2).transpose(1, 2))
        for layer in self.layers:
            feat = layer(feat, (h, w))
        feat = self.norm(feat).transpose(1, 2).view(x.shape)
        x = self.conv_after_body(feat) + x
        return self.upsample(x) + self.mean
