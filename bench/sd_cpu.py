"""Kiln's native SD engine against diffusers on this CPU, on the same model, torch, threads and
dtype, in one run: one UNet call with classifier-free guidance (batch 2) and one VAE decode, the
load time (warm page cache) and the peak resident memory after loading.

The model is full-size SD 1.5 with random weights, made by tools/sd/random_sd.py (diffusers) into
--cache (not committed; about 2 GB in float16). Kiln's side is build/kiln_bench_sd
(bench/sd_components.cc), run as a separate process so that its memory is its own.

usage: sd_cpu.py [--kind sd15|sdxl|tiny] [--size WxH] [--iters N] [--threads N]
                 [--dtypes float32,bfloat16] [--cache DIR] [--json OUT]
Prints a markdown table; --json writes the figures.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "sd"))
import random_sd  # noqa: E402


def diffusers_times(folder, dtype, size, iters):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer
    torch_dtype = getattr(torch, dtype)
    t0 = time.perf_counter()
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=torch_dtype)
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=torch.float32)
    text = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=torch_dtype)
    load = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tok = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    w, h = (int(v) for v in size.split("x"))
    with torch.inference_mode():
        ids = tok(["a photo of a cat", ""], padding="max_length", max_length=77,
                  truncation=True, return_tensors="pt").input_ids
        hidden = text(ids)[0]
        torch.manual_seed(0)
        x = torch.randn(2, 4, h // 8, w // 8).to(torch_dtype)
        t = torch.tensor(500.0)
        times = []
        for i in range(iters + 1):
            s = time.perf_counter()
            unet(x, t, encoder_hidden_states=hidden).sample
            if i:
                times.append(time.perf_counter() - s)
        z = torch.randn(1, 4, h // 8, w // 8)
        decode = []
        for i in range(iters + 1):
            s = time.perf_counter()
            vae.decode(z).sample
            if i:
                decode.append(time.perf_counter() - s)
    median = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return {"load_seconds": load, "unet_cfg_step_seconds": median(times),
            "vae_decode_seconds": median(decode), "peak_rss_bytes_after_load": rss,
            "peak_rss_bytes_end": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def diffusers_in_child(folder, dtype, size, iters, threads):
    """diffusers_times in a process of its own, so that its peak memory is its own."""
    out = subprocess.run([sys.executable, __file__, "--diffusers-child", folder, dtype, size,
                          str(iters), str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def kiln_times(binary, folder, dtype, size, iters, threads):
    out = subprocess.run([binary, folder, "--dtype", dtype, "--size", size, "--iters", str(iters),
                          "--threads", str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def weights_bytes(folder, parts=("unet", "vae", "text_encoder", "text_encoder_2")):
    total = 0
    for part in parts:
        d = os.path.join(folder, part)
        if os.path.isdir(d):
            total += sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
                         if f.endswith(".safetensors"))
    return total


def main():
    if len(sys.argv) == 7 and sys.argv[1] == "--diffusers-child":
        folder, dtype, size, iters, threads = sys.argv[2:]
        torch.set_num_threads(int(threads))
        print(json.dumps(diffusers_times(folder, dtype, size, int(iters))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="sd15", choices=["sd15", "sdxl", "tiny"])
    ap.add_argument("--size", default=None, help="WxH (default: the model's own)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--cache", default=os.path.join(ROOT, "build", "bench-models"))
    ap.add_argument("--kiln-bench", default=os.path.join(ROOT, "build", "kiln_bench_sd"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    size = args.size or {"sd15": "512x512", "sdxl": "1024x1024", "tiny": "64x64"}[args.kind]
    folder = os.path.join(args.cache, f"{args.kind}-random-fp16")
    if not os.path.exists(os.path.join(folder, "model_index.json")):
        print(f"making {folder} (random weights, published architecture) ...", flush=True)
        random_sd.make_model(args.kind, folder, "float16")
    rows = []
    for dtype in args.dtypes.split(","):
        kiln_times(args.kiln_bench, folder, dtype, size, 0, args.threads)  # warm the page cache
        k = kiln_times(args.kiln_bench, folder, dtype, size, args.iters, args.threads)
        d = diffusers_in_child(folder, dtype, size, args.iters, args.threads)
        rows.append({"dtype": dtype, "kiln": k, "diffusers": d})
    weights = weights_bytes(folder)
    print(f"\n{args.kind} at {size}, {args.threads} threads, torch {torch.__version__}, "
          f"weights stored as float16: {weights / 2**30:.2f} GiB\n")
    print("| dtype | what | Kiln (s) | diffusers (s) | Kiln / diffusers |")
    print("|---|---|---|---|---|")
    for r in rows:
        for key, what in (("unet_cfg_step_seconds", "UNet call, batch 2 (CFG)"),
                          ("vae_decode_seconds", "VAE decode, 1 image"),
                          ("load_seconds", "load (warm page cache)")):
            k, d = r["kiln"][key], r["diffusers"][key]
            print(f"| {r['dtype']} | {what} | {k:.3f} | {d:.3f} | {k / d:.2f} |")
        for key, what in (("peak_rss_bytes_after_load", "peak RSS after load (GiB)"),
                          ("peak_rss_bytes_end", "peak RSS after the runs (GiB)")):
            k, d = r["kiln"][key], r["diffusers"][key]
            print(f"| {r['dtype']} | {what} | {k / 2**30:.2f} | {d / 2**30:.2f} | {k / d:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"kind": args.kind, "size": size, "threads": args.threads,
                       "torch": torch.__version__, "weights_bytes": weights, "rows": rows}, f,
                      indent=1)


if __name__ == "__main__":
    main()
