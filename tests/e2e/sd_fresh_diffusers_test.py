"""Parity with diffusers that does not rest on stored files.

diffusers and transformers from PyPI (the project venv) make two new random-weight Stable
Diffusion models now (tiny widths; one with SD 1.x's traits, one with SD 2.x's: linear
projections, per-block head counts, exact-gelu text encoder, v-prediction; tools/sd/random_sd.py's
byte-level CLIP vocabulary), save them as diffusers folders and draw pictures from them with a
seeded CPU generator (Euler with trailing spacing, Euler a with a negative prompt, DDIM). `kiln generate` loads the
same folder and must draw the same pictures from the same seeds: within one 8-bit level per
channel (both round the same float picture; fp32 rounding may move a value across a rounding
boundary).

usage: sd_fresh_diffusers_test.py KILN_BINARY
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools", "sd"))
import random_sd  # noqa: E402

torch.manual_seed(20261128)
torch.set_num_threads(1)


def make_pipeline(kind, work):
    """A tiny pipeline (`tiny`: SD 1.x traits, `tiny-v`: SD 2.x traits) with random weights,
    random norms and a scaled output layer, so that nothing hides behind unit defaults and the
    pictures are not flat."""
    pipe = random_sd.make_pipeline(kind, work)
    with torch.no_grad():
        for model in (pipe.unet, pipe.vae, pipe.text_encoder):
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
        pipe.unet.conv_out.weight.mul_(3.0)
    # SDXL-Turbo-style trailing spacing.
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config,
                                                        timestep_spacing="trailing")
    return pipe


def main():
    kiln = sys.argv[1]
    failures = []
    with tempfile.TemporaryDirectory(prefix="kiln-fresh-sd-") as work:
        models = os.path.join(work, "models")
        pipes = {}
        for kind in ("tiny", "tiny-v"):
            pipes[kind] = make_pipeline(kind, os.path.join(work, kind))
            pipes[kind].save_pretrained(os.path.join(models, kind))
        cases = [
            ("tiny", "euler", EulerDiscreteScheduler, "a red cat", "", 5, 7.5, 11),
            ("tiny", "euler_a", EulerAncestralDiscreteScheduler, "a cat", "red", 4, 5.0, 12),
            ("tiny", "ddim", DDIMScheduler, "a red cat", "", 4, 7.5, 13),
            ("tiny-v", "euler", EulerDiscreteScheduler, "a red cat", "", 5, 7.5, 14),
        ]
        for kind, sampler, cls, prompt, negative, steps, guidance, seed in cases:
            pipe = pipes[kind]
            pipe.scheduler = cls.from_config(pipe.scheduler.config)
            want = pipe(prompt, negative_prompt=negative or None, num_inference_steps=steps,
                        guidance_scale=guidance, height=64, width=64,
                        generator=torch.Generator("cpu").manual_seed(seed),
                        output_type="np").images[0]
            want_u8 = (want * 255).round().astype(np.int16)
            name = f"{kind} {sampler}"
            out = os.path.join(work, f"{kind}-{sampler}.png")
            cmd = [kiln, "generate", "--models", models, "--model", kind, "--prompt", prompt,
                   "--steps", str(steps), "--guidance", str(guidance), "--seed", str(seed),
                   "--sampler", sampler, "--size", "64x64", "--threads", "1", "--output", out]
            if negative:
                cmd += ["--negative-prompt", negative]
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if run.returncode != 0:
                failures.append(f"{name}: kiln generate failed: {run.stderr}")
                continue
            got = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
            diff = np.abs(got - want_u8)
            spread = float(want_u8.std())
            print(f"{name}: max |kiln - diffusers| = {diff.max()} levels, "
                  f"{(diff > 0).mean() * 100:.2f}% of values differ; picture std {spread:.1f}")
            if diff.max() > 1:
                failures.append(f"{name}: max difference {diff.max()} levels")
            if spread < 5:
                failures.append(f"{name}: the reference picture is flat (std {spread:.1f})")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("ok: kiln generate draws diffusers' pictures from a model diffusers made just now")


if __name__ == "__main__":
    main()
