"""A Python reference sampler for exported tiny-shapes models: Euler in sigma space with
"linspace" timesteps (as Kiln's C++ `euler`), classifier-free guidance, and InstructPix2Pix
three-branch guidance for edits. Used by evaluate.py to score many prompts quickly."""
import numpy as np
import torch

import data
import model as M


class Sampler:
    def __init__(self, model_dir):
        self.te = torch.jit.load(f"{model_dir}/text_encoder.pt")
        self.dn = torch.jit.load(f"{model_dir}/denoiser.pt")
        vocab = open(f"{model_dir}/words.txt").read().split("\n")
        self.index = {w: i for i, w in enumerate(vocab) if w}
        abar = M.linear_alphas_cumprod().numpy()
        self.sigmas_train = np.sqrt((1 - abar) / abar)

    def encode(self, texts):
        ids = torch.tensor([data.encode(t, self.index, M.MAX_LEN) for t in texts])
        return self.te(ids)

    @torch.no_grad()
    def generate(self, prompts, seeds, steps=20, guidance=4.0, sources=None, image_guidance=1.5):
        """prompts: list of str; sources: None or list of uint8 [32,32,3] images for edits.
        Returns uint8 [N,32,32,3]."""
        n = len(prompts)
        ts = np.linspace(999, 0, steps)
        sig = np.interp(ts, np.arange(1000), self.sigmas_train).tolist() + [0.0]
        x = torch.stack([torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(s))
                         for s in seeds]) * sig[0]
        cond = self.encode(prompts)
        uncond = self.encode([""] * n)
        if sources is None:
            img = torch.zeros(n, 3, 32, 32)
        else:
            img = torch.from_numpy(np.stack(sources)).float().permute(0, 3, 1, 2) / 127.5 - 1
        zeros = torch.zeros_like(img)
        for i in range(steps):
            s = sig[i]
            xin = x / np.sqrt(s * s + 1)
            t = torch.full((n,), float(ts[i]))
            if sources is None:
                e = self.dn(torch.cat([xin, xin]), torch.cat([t, t]), torch.cat([cond, uncond]),
                            torch.cat([img, img]))
                ec, eu = e[:n], e[n:]
                eps = eu + guidance * (ec - eu)
            else:
                e = self.dn(torch.cat([xin, xin, xin]), torch.cat([t, t, t]),
                            torch.cat([cond, uncond, uncond]), torch.cat([img, img, zeros]))
                ef, ei, eu = e[:n], e[n:2 * n], e[2 * n:]
                eps = eu + image_guidance * (ei - eu) + guidance * (ef - ei)
            denoised = x - s * eps
            x = x + (x - denoised) / s * (sig[i + 1] - s)
        out = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
        return out.numpy()
