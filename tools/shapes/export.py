"""Exports a training checkpoint (EMA weights) as models/tiny-shapes/ in the Kiln model format.

.venv/bin/python tools/shapes/export.py --run tools/shapes/runs/main --out models/tiny-shapes
"""
import argparse
import json
import os

import numpy as np
import torch

import data
import model as M

MODEL_YAML = """kind: pixel
description: "tiny-shapes: procedural shapes, text-to-image and instruction edits (32x32, trained here)"
tasks: [generate, edit]
sizes: ["32x32"]
channels: 3
image_cond_channels: 3
downsample: 1
latent_scale: 1.0
max_batch: 64
schedule:
  num_train_timesteps: 1000
  beta_schedule: linear
  beta_start: 0.0001
  beta_end: 0.02
  prediction_type: eps
defaults:
  steps: 20
  guidance_scale: {guidance}
  image_guidance_scale: {image_guidance}
  sampler: euler
tokenizer:
  type: words
  max_length: {max_len}
  vocab: words.txt
files:
  text_encoder: text_encoder.pt
  denoiser: denoiser.pt
"""


def load(run):
    """EMA weights from weights.npz (written when training ends) or from the last checkpoint."""
    vocab = data.vocabulary()
    npz = os.path.join(run, "weights.npz")
    if os.path.exists(npz):
        w = np.load(npz)
        te_state = {k[3:]: torch.from_numpy(w[k]) for k in w.files if k.startswith("te.")}
        dn_state = {k[3:]: torch.from_numpy(w[k]) for k in w.files if k.startswith("dn.")}
        step = json.load(open(os.path.join(run, "train.json")))["iters"]
    else:
        s = torch.load(os.path.join(run, "ckpt.pt"), map_location="cpu")
        te_state, dn_state, step = s["ema_te"], s["ema_dn"], s["step"]
    te = M.TextEncoder(len(vocab))
    dn = M.Denoiser(self_attention=any(k.startswith("sm.") for k in dn_state),
                    source_summary=any(k.startswith("src.") for k in dn_state))
    te.load_state_dict(te_state)
    dn.load_state_dict(dn_state)
    te.eval()
    dn.eval()
    return te, dn, vocab, step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--image-guidance", type=float, default=2.5)
    args = ap.parse_args()
    te, dn, vocab, step = load(args.run)
    os.makedirs(args.out, exist_ok=True)
    # Trace (not script): nn.TransformerEncoder's fast path is not scriptable in torch 1.13.
    ids = torch.tensor([data.encode("a red circle on the left", {w: i for i, w in enumerate(vocab)},
                                    M.MAX_LEN)] * 2)
    with torch.no_grad():
        te_ts = torch.jit.trace(te, (ids,), check_trace=False)
        hidden = te(ids)
        x = torch.randn(2, 3, 32, 32)
        t = torch.tensor([10.0, 900.0])
        cond = torch.zeros(2, 3, 32, 32)
        dn_ts = torch.jit.trace(dn, (x, t, hidden, cond), check_trace=False)
        # The traced modules must agree with the eager ones, for another batch size too.
        ids3 = torch.cat([ids, ids[:1]])
        assert torch.allclose(te_ts(ids3), te(ids3), atol=1e-5)
        h3 = te(ids3)
        x3 = torch.randn(3, 3, 32, 32)
        t3 = torch.tensor([1.0, 500.5, 999.0])
        c3 = torch.randn(3, 3, 32, 32)
        assert torch.allclose(dn_ts(x3, t3, h3, c3), dn(x3, t3, h3, c3), atol=1e-4)
    torch.jit.save(te_ts, os.path.join(args.out, "text_encoder.pt"))
    torch.jit.save(dn_ts, os.path.join(args.out, "denoiser.pt"))
    with open(os.path.join(args.out, "words.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    with open(os.path.join(args.out, "model.yaml"), "w") as f:
        f.write(MODEL_YAML.format(guidance=args.guidance, image_guidance=args.image_guidance,
                                  max_len=M.MAX_LEN))
    with open(os.path.join(args.out, "export.json"), "w") as f:
        json.dump({"step": step}, f)
    print(f"exported step {step} to {args.out}")


if __name__ == "__main__":
    main()
