"""Trains tiny-shapes (text encoder + denoiser) from scratch; resumable.

.venv/bin/python tools/shapes/train.py --out tools/shapes/runs/main --iters 20000
"""
import argparse
import copy
import json
import os
import random
import time

import numpy as np
import torch

import data
import model as M


def batch(rng, vocab_index, n, edit_frac, kinds=data.EDIT_KINDS):
    """Mixed text-to-image and edit samples, with InstructPix2Pix condition dropout."""
    xs, conds, ids = [], [], []
    empty = data.encode("", vocab_index, M.MAX_LEN)
    tuples = [t for t in data.all_tuples() if not data.is_heldout(t)]
    for _ in range(n):
        if rng.random() >= edit_frac:
            t = rng.choice(tuples)
            size = rng.choice(list(data.SIZES))
            img = data.render(*t, size)
            text = data.caption(rng, *t, size)
            cond_img = None
        else:
            src, size, text, dst, _, _ = data.sample_edit(rng, False, kinds)
            img = data.render(*dst, size)
            cond_img = data.render(*src, size)
        tok = data.encode(text, vocab_index, M.MAX_LEN)
        r = rng.random()
        if cond_img is None:
            if r < 0.1:
                tok = empty
            c = np.zeros((3, 32, 32), np.float32)
        else:
            c = cond_img.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1
            if r < 0.05:
                tok = empty
            elif r < 0.10:
                c = np.zeros_like(c)
            elif r < 0.15:
                tok = empty
                c = np.zeros_like(c)
        xs.append(img.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1)
        conds.append(c)
        ids.append(tok)
    return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(conds)),
            torch.tensor(ids, dtype=torch.int64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--iters", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--edit-frac", type=float, default=0.45, help="share of edit samples")
    ap.add_argument("--init", help="a fresh run starts from this exported model folder's weights "
                    "(fine-tuning) instead of random ones")
    ap.add_argument("--self-attention", action="store_true",
                    help="give the denoiser a self-attention block at 8x8 (SelfAttention)")
    ap.add_argument("--source-summary", action="store_true",
                    help="give the denoiser a global summary of the source image (SourceSummary)")
    ap.add_argument("--move-weight", type=int, default=1,
                    help="draw move edits this many times as often as each other kind")
    ap.add_argument("--pretrained-lr-scale", type=float, default=1.0,
                    help="with --init: the learning rate of the initialised weights, as a share of "
                    "--lr (the weights new to the run get all of it)")
    ap.add_argument("--x0-weight", type=float, default=1.0,
                    help="weigh each sample's noise error by (1-abar)/abar (its error in the image), "
                    "clamped to [1, this]: more weight on the noisy steps, where an edit decides "
                    "the colour and form it draws; 1 is the plain noise loss")
    ap.add_argument("--time-budget", type=float, default=0,
                    help="seconds; after 200 steps, cut --iters so training ends within it")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    vocab = data.vocabulary()
    vocab_index = {w: i for i, w in enumerate(vocab)}
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    te = M.TextEncoder(len(vocab)).to(dev)
    dn = M.Denoiser(self_attention=args.self_attention,
                    source_summary=args.source_summary).to(dev)
    new_names = set()  # denoiser parameters the initialising model does not have
    if args.init:
        # The exported TorchScript modules carry the same parameter names as the eager ones; a
        # denoiser that gained a module (SelfAttention, SourceSummary: zero output) keeps that
        # module's own start.
        init_dn = torch.jit.load(os.path.join(args.init, "denoiser.pt")).state_dict()
        new_names = {k for k, _ in dn.named_parameters() if k not in init_dn}
        if not os.path.exists(os.path.join(args.out, "ckpt.pt")):
            te.load_state_dict(
                torch.jit.load(os.path.join(args.init, "text_encoder.pt")).state_dict())
            missing, unexpected = dn.load_state_dict(init_dn, strict=False)
            if unexpected:
                raise SystemExit(f"{args.init}: weights this denoiser does not have: {unexpected}")
            print(f"initialised from {args.init}; new: {sorted(missing)}", flush=True)
    new_params = [p for k, p in dn.named_parameters() if k in new_names]
    old_params = list(te.parameters()) + [p for k, p in dn.named_parameters() if k not in new_names]
    params = old_params + new_params
    groups = [{"params": old_params, "scale": args.pretrained_lr_scale if args.init else 1.0}]
    if new_params:
        groups.append({"params": new_params, "scale": 1.0})
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.0)
    kinds = data.EDIT_KINDS + ["move"] * (args.move_weight - 1)
    ema_te, ema_dn = copy.deepcopy(te), copy.deepcopy(dn)
    abar = M.linear_alphas_cumprod().float().to(dev)
    step = 0
    ckpt = os.path.join(args.out, "ckpt.pt")
    if os.path.exists(ckpt):
        s = torch.load(ckpt, map_location=dev, weights_only=False)  # our own checkpoint
        te.load_state_dict(s["te"]); dn.load_state_dict(s["dn"])
        ema_te.load_state_dict(s["ema_te"]); ema_dn.load_state_dict(s["ema_dn"])
        opt.load_state_dict(s["opt"]); step = s["step"]
        print(f"resumed at step {step}", flush=True)
    rng = random.Random(args.seed + step)
    torch.manual_seed(args.seed + step)
    nparams = sum(p.numel() for p in params)
    print(f"params {nparams}", flush=True)
    start = time.time()
    t0 = time.time()
    first_step = step
    while step < args.iters:
        lr = args.lr * min(1.0, (step + 1) / 500) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / args.iters)))
        for g in opt.param_groups:
            g["lr"] = lr * g["scale"]
        x0, cond, ids = (v.to(dev) for v in batch(rng, vocab_index, args.batch, args.edit_frac,
                                                     kinds))
        t = torch.randint(0, 1000, (args.batch,), device=dev)
        noise = torch.randn_like(x0)
        a = abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = dn(xt, t.float(), te(ids), cond)
        per_sample = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
        w = ((1 - abar[t]) / abar[t]).clamp(1.0, args.x0_weight)
        loss = (w * per_sample).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if args.time_budget and step == first_step + 200:
            per_it = (time.time() - start) / 200
            args.iters = min(args.iters, first_step + int(args.time_budget / per_it))
            print(f"time budget: {per_it:.4f}s/it -> {args.iters} iterations", flush=True)
        # A fine-tune starts from good weights: its average keeps them from the first step.
        decay = 0.999 if args.init else min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(list(ema_te.parameters()) + list(ema_dn.parameters()),
                            list(te.parameters()) + list(dn.parameters())):
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} lr {lr:.2e} {(time.time() - t0) / 50:.3f}s/it",
                  flush=True)
            t0 = time.time()
        if step % args.ckpt_every == 0 or step == args.iters:
            torch.save({"te": te.state_dict(), "dn": dn.state_dict(), "ema_te": ema_te.state_dict(),
                        "ema_dn": ema_dn.state_dict(), "opt": opt.state_dict(), "step": step},
                       ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
    # EMA weights as plain arrays: loadable by any torch version (export runs on Debian's 1.13).
    arrays = {f"te.{k}": v.detach().cpu().numpy() for k, v in ema_te.state_dict().items()}
    arrays.update({f"dn.{k}": v.detach().cpu().numpy() for k, v in ema_dn.state_dict().items()})
    np.savez(os.path.join(args.out, "weights.npz"), **arrays)
    with open(os.path.join(args.out, "train.json"), "w") as f:
        json.dump({"iters": args.iters, "batch": args.batch, "params": nparams, "device": args.device,
                   "torch": torch.__version__,
                   "seconds_this_run": time.time() - start, "vocab": vocab}, f)
    print("done", flush=True)


if __name__ == "__main__":
    main()
