"""tiny-shapes networks: a small text encoder and a pixel-space UNet denoiser with text
cross-attention and image-conditioning channels (InstructPix2Pix style). TorchScript-able."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

TEXT_DIM = 64
MAX_LEN = 16


class TextEncoder(nn.Module):
    def __init__(self, vocab: int, dim: int = TEXT_DIM, layers: int = 2, max_len: int = MAX_LEN):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(1, max_len, dim))
        layer = nn.TransformerEncoderLayer(dim, 4, dim * 2, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers)
        self.norm = nn.LayerNorm(dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(input_ids) + self.pos[:, : input_ids.shape[1]]
        return self.norm(self.enc(h))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32,
                                                        device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int):
        super().__init__()
        self.n1 = nn.GroupNorm(8, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(tdim, cout)
        self.n2 = nn.GroupNorm(8, cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        h = h + self.t(temb)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return h + self.skip(x)


class CrossAttention(nn.Module):
    def __init__(self, ch: int, ctx: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(8, ch)
        self.q = nn.Linear(ch, ch)
        self.k = nn.Linear(ctx, ch)
        self.v = nn.Linear(ctx, ch)
        self.o = nn.Linear(ch, ch)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(self.norm(x).flatten(2).transpose(1, 2))  # [B, HW, C]
        k = self.k(ctx)
        v = self.v(ctx)
        d = c // self.heads
        q = q.reshape(b, h * w, self.heads, d).transpose(1, 2)
        k = k.reshape(b, -1, self.heads, d).transpose(1, 2)
        v = v.reshape(b, -1, self.heads, d).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        out = (att @ v).transpose(1, 2).reshape(b, h * w, c)
        return x + self.o(out).transpose(1, 2).reshape(b, c, h, w)


class SelfAttention(nn.Module):
    """Every position attends to every other: lets a move edit carry the shape's colour and form
    from where it was to where it goes (beyond what the 3x3 convolutions reach). The output
    projection starts at zero, so a network gaining this block computes what it did before."""

    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(8, ch)
        self.qkv = nn.Linear(ch, ch * 3)
        self.o = nn.Linear(ch, ch)
        nn.init.zeros_(self.o.weight)
        nn.init.zeros_(self.o.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        d = c // self.heads
        qkv = self.qkv(self.norm(x).flatten(2).transpose(1, 2))  # [B, HW, 3C]
        qkv = qkv.reshape(b, h * w, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, heads, HW, d]
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        out = (att @ v).transpose(1, 2).reshape(b, h * w, c)
        return x + self.o(out).transpose(1, 2).reshape(b, c, h, w)


class SourceSummary(nn.Module):
    """What the source image shows, as one vector for every position: a move must draw the
    shape's colour and form where the source has only background, far from where they were.
    Convolutions to 8x8, then the maximum and the mean over the image. The vector is added to the
    timestep embedding, which every residual block reads. The output layer starts at zero, and a
    zero image condition (text-to-image, and the dropped-image guidance branch) adds nothing."""

    def __init__(self, tdim: int, ch: int = 32):
        super().__init__()
        self.c1 = nn.Conv2d(3, ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(ch * 2, ch * 2, 3, stride=2, padding=1)
        self.mlp = nn.Sequential(nn.Linear(ch * 4, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def vector(self, image: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.c3(F.silu(self.c2(F.silu(self.c1(image))))))
        return self.mlp(torch.cat([h.amax(dim=(2, 3)), h.mean(dim=(2, 3))], dim=1))

    def forward(self, image_cond: torch.Tensor) -> torch.Tensor:
        return self.vector(image_cond) - self.vector(torch.zeros_like(image_cond[:1]))


class Denoiser(nn.Module):
    """(x [B,3,32,32], t [B], hidden [B,T,D], image_cond [B,3,32,32]) -> eps.

    `self_attention` adds SelfAttention at 8x8 (tried in a fine-tune, not shipped);
    `source_summary` adds SourceSummary to the timestep embedding."""

    def __init__(self, ch: int = 32, ctx: int = TEXT_DIM, self_attention: bool = False,
                 source_summary: bool = False):
        super().__init__()
        tdim = ch * 4
        self.ch = ch
        self.temb = nn.Sequential(nn.Linear(ch, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.src = SourceSummary(tdim) if source_summary else None
        self.inp = nn.Conv2d(6, ch, 3, padding=1)
        self.d1 = ResBlock(ch, ch, tdim)                  # 32
        self.down1 = nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1)
        self.d2 = ResBlock(ch * 2, ch * 2, tdim)          # 16
        self.a2 = CrossAttention(ch * 2, ctx)
        self.down2 = nn.Conv2d(ch * 2, ch * 2, 3, stride=2, padding=1)
        self.m1 = ResBlock(ch * 2, ch * 2, tdim)          # 8
        self.am = CrossAttention(ch * 2, ctx)
        self.sm = SelfAttention(ch * 2) if self_attention else nn.Identity()
        self.m2 = ResBlock(ch * 2, ch * 2, tdim)
        self.up2 = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.u2 = ResBlock(ch * 4, ch * 2, tdim)          # 16
        self.au = CrossAttention(ch * 2, ctx)
        self.up1 = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.u1 = ResBlock(ch * 3, ch, tdim)              # 32
        self.out_norm = nn.GroupNorm(8, ch)
        self.out = nn.Conv2d(ch, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor,
                image_cond: torch.Tensor) -> torch.Tensor:
        temb = self.temb(timestep_embedding(t, self.ch))
        if self.src is not None:
            temb = temb + self.src(image_cond)
        h0 = self.d1(self.inp(torch.cat([x, image_cond], dim=1)), temb)
        h1 = self.a2(self.d2(self.down1(h0), temb), hidden)
        h = self.m1(self.down2(h1), temb)
        h = self.m2(self.sm(self.am(h, hidden)), temb)
        h = self.au(self.u2(torch.cat([self.up2(h), h1], dim=1), temb), hidden)
        h = self.u1(torch.cat([self.up1(h), h0], dim=1), temb)
        return self.out(F.silu(self.out_norm(h)))


def linear_alphas_cumprod(n: int = 1000, start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    betas = torch.linspace(start, end, n, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)
