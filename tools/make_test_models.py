#!/usr/bin/env python3
"""Writes small randomly initialised pipelines that follow the model repository contract.

They exercise every code path of the engine (pixel and latent models, both tokenizers, image
conditioning, encoder and decoder) without trained weights, so tests do not depend on training.
test-identity has a denoiser that returns its input: serving it measures the system's own
overhead (bench/overhead.sh), not the model's.
Run with the project venv (scripts/install-deps.sh):  .venv/bin/python tools/make_test_models.py --out build/test-models
"""
import argparse
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F


class TextEncoder(nn.Module):
    def __init__(self, vocab: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(input_ids)
        return torch.tanh(self.proj(h))


class Denoiser(nn.Module):
    """x, t, hidden, image_cond -> prediction with the same shape as x."""

    def __init__(self, channels: int, cond_channels: int, dim: int):
        super().__init__()
        self.inp = nn.Conv2d(channels + cond_channels, 16, 3, padding=1)
        self.mid = nn.Conv2d(16, 16, 3, padding=1)
        self.out = nn.Conv2d(16, channels, 3, padding=1)
        self.text = nn.Linear(dim, 16)
        self.time = nn.Linear(1, 16)

    def forward(self, x: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor,
                image_cond: torch.Tensor) -> torch.Tensor:
        h = self.inp(torch.cat([x, image_cond], dim=1))
        temb = torch.sin(self.time((t / 1000.0).unsqueeze(1)))
        h = h + self.text(hidden.mean(dim=1))[:, :, None, None] + temb[:, :, None, None]
        h = F.silu(self.mid(F.silu(h)))
        return 0.5 * torch.tanh(self.out(h)) + 0.1 * x


class EmbeddingEncoder(nn.Module):
    """The smallest text encoder the contract allows: a lookup table."""

    def __init__(self, vocab: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.emb(input_ids)


class IdentityDenoiser(nn.Module):
    """Returns x: the denoiser costs nothing, so only the serving path is timed."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor,
                image_cond: torch.Tensor) -> torch.Tensor:
        return x


class Decoder(nn.Module):
    def __init__(self, channels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(latent, scale_factor=float(self.factor), mode="nearest")
        return torch.tanh(self.conv(up))


class Encoder(nn.Module):
    def __init__(self, channels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(3, channels, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(F.avg_pool2d(image, self.factor))


def save(module: nn.Module, path: str) -> None:
    module.eval()
    torch.jit.save(torch.jit.script(module), path)


WORDS = ["<pad>", "<bos>", "<eos>", "<unk>", "a", "red", "green", "blue", "circle", "square",
         "triangle", "on", "background", "white", "black", "make", "the", "it", "move", "left"]


def write_pixel_yaml(d: str, description: str, sizes: str, guidance: float) -> None:
    """model.yaml of a pixel-space test model with the words tokenizer."""
    with open(os.path.join(d, "model.yaml"), "w") as f:
        f.write(f"""kind: pixel
description: "{description}"
tasks: [generate, edit]
sizes: [{sizes}]
channels: 3
image_cond_channels: 3
downsample: 1
latent_scale: 1.0
max_batch: 8
schedule:
  num_train_timesteps: 1000
  beta_schedule: linear
  beta_start: 0.0001
  beta_end: 0.02
  prediction_type: eps
defaults:
  steps: 8
  guidance_scale: {guidance}
  image_guidance_scale: 1.5
  sampler: euler
tokenizer:
  type: words
  max_length: 12
  vocab: words.txt
files:
  text_encoder: text_encoder.pt
  denoiser: denoiser.pt
""")


def write_pixel_model(out: str) -> None:
    d = os.path.join(out, "test-pixel")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "words.txt"), "w") as f:
        f.write("\n".join(WORDS) + "\n")
    save(TextEncoder(len(WORDS), 8), os.path.join(d, "text_encoder.pt"))
    save(Denoiser(3, 3, 8), os.path.join(d, "denoiser.pt"))
    write_pixel_yaml(d, "randomly initialised pixel-space test pipeline", '"32x32", "16x16"', 4.0)


def write_identity_model(out: str) -> None:
    d = os.path.join(out, "test-identity")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "words.txt"), "w") as f:
        f.write("\n".join(WORDS) + "\n")
    save(EmbeddingEncoder(len(WORDS), 4), os.path.join(d, "text_encoder.pt"))
    save(IdentityDenoiser(), os.path.join(d, "denoiser.pt"))
    # guidance_scale 1.0 turns classifier-free guidance off: one denoiser row per image.
    write_pixel_yaml(d, "identity denoiser: measures serving overhead, not the model", '"32x32"', 1.0)


def bytes_to_unicode():
    """CLIP's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_latent_model(out: str) -> None:
    d = os.path.join(out, "test-latent")
    os.makedirs(d, exist_ok=True)
    base = list(bytes_to_unicode().values())
    vocab = base + [c + "</w>" for c in base]
    merges = [("r", "e"), ("re", "d</w>"), ("c", "i"), ("ci", "r"), ("l", "e</w>")]
    for a, b in merges:
        vocab.append(a + b)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(d, "vocab.json"), "w") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    save(TextEncoder(len(vocab), 8), os.path.join(d, "text_encoder.pt"))
    save(Denoiser(4, 4, 8), os.path.join(d, "denoiser.pt"))
    save(Decoder(4, 4), os.path.join(d, "decoder.pt"))
    save(Encoder(4, 4), os.path.join(d, "encoder.pt"))
    with open(os.path.join(d, "model.yaml"), "w") as f:
        f.write("""kind: latent
description: "randomly initialised latent test pipeline with a CLIP BPE tokenizer"
tasks: [generate, edit]
sizes: ["32x32", "64x32"]
channels: 4
image_cond_channels: 4
downsample: 4
latent_scale: 0.5
image_cond_scale: 1.0
max_batch: 4
schedule:
  num_train_timesteps: 1000
  beta_schedule: scaled_linear
  beta_start: 0.00085
  beta_end: 0.012
  prediction_type: v
defaults:
  steps: 6
  guidance_scale: 7.5
  image_guidance_scale: 1.5
  sampler: dpmpp_2m_karras
tokenizer:
  type: clip_bpe
  max_length: 12
  vocab: vocab.json
  merges: merges.txt
  pad: eos
files:
  text_encoder: text_encoder.pt
  denoiser: denoiser.pt
  decoder: decoder.pt
  encoder: encoder.pt
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(1234)
    os.makedirs(args.out, exist_ok=True)
    write_pixel_model(args.out)
    write_latent_model(args.out)
    # Last, so the random weights of the models above do not change.
    write_identity_model(args.out)
    print(f"test models written to {args.out}")


if __name__ == "__main__":
    main()
