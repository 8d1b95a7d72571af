#!/usr/bin/env python3
"""The peer baseline for bench/overhead.sh: FastAPI + uvicorn + PyTorch serving a Kiln model folder.

It answers POST /v1/images/generations as Kiln does and does the same work per request: words
tokenizer, text encoder over prompt and negative prompt, seeded CPU noise, Euler in sigma space
(linspace timesteps, as src/engine/samplers/schedule.cc), classifier-free guidance when
guidance_scale != 1, RGB8 conversion, PNG with a parameters text chunk, base64. It is a
performance peer written the way such a server is usually written, not a correctness oracle, and
it supports only what the benchmark asks for: pixel models with a words tokenizer, sampler euler.

Run with the project venv (scripts/install-deps.sh: torch, fastapi, uvicorn with uvloop and httptools, pillow):
  .venv/bin/python bench/peer/identity_server.py --model-dir build/test-models/test-identity --port 8090
"""
import argparse
import base64
import io
import json
import math
import random
import re
import time
from typing import List, Optional

import torch
import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image, PngImagePlugin
from pydantic import BaseModel


class WordsTokenizer:
    """As src/engine/tokenizer/words_tokenizer.cc: ASCII alphanumeric runs, lower-cased."""

    def __init__(self, vocab_path: str, max_length: int):
        with open(vocab_path, encoding="utf-8") as f:
            words = [line.rstrip("\r\n") for line in f]
        self.ids = {w: i for i, w in enumerate(words)}
        self.pad, self.bos = self.ids["<pad>"], self.ids["<bos>"]
        self.eos, self.unk = self.ids["<eos>"], self.ids["<unk>"]
        self.max_length = max_length

    def encode(self, text: str) -> List[int]:
        ids = [self.bos]
        ids += [self.ids.get(w.lower(), self.unk) for w in re.findall(r"[A-Za-z0-9]+", text)]
        ids.append(self.eos)
        if len(ids) > self.max_length:
            ids = ids[:self.max_length]
            ids[-1] = self.eos
        return ids + [self.pad] * (self.max_length - len(ids))


class Schedule:
    """Training sigmas and the Euler plan, as src/engine/samplers/schedule.cc."""

    def __init__(self, spec: dict):
        n = int(spec.get("num_train_timesteps", 1000))
        start, end = float(spec.get("beta_start", 0.00085)), float(spec.get("beta_end", 0.012))
        kind = spec["beta_schedule"]
        if kind == "linear":
            betas = [start + (end - start) * i / (n - 1) for i in range(n)]
        elif kind == "scaled_linear":
            a, b = math.sqrt(start), math.sqrt(end)
            betas = [(a + (b - a) * i / (n - 1)) ** 2 for i in range(n)]
        elif kind == "squaredcos_cap_v2":
            def abar(t):
                return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
            betas = [min(1 - abar((i + 1) / n) / abar(i / n), 0.999) for i in range(n)]
        else:
            raise ValueError(f"unknown beta_schedule {kind}")
        self.sigmas, prod = [], 1.0
        for beta in betas:
            prod *= 1.0 - beta
            self.sigmas.append(math.sqrt((1.0 - prod) / prod))
        self.eps = spec.get("prediction_type", "eps") in ("eps", "epsilon")

    def sigma_at(self, t: float) -> float:
        last = len(self.sigmas) - 1
        t = min(max(t, 0.0), float(last))
        lo = int(math.floor(t))
        hi = min(lo + 1, last)
        w = t - lo
        return self.sigmas[lo] * (1.0 - w) + self.sigmas[hi] * w

    def euler_plan(self, steps: int):
        last = len(self.sigmas) - 1
        ts = [float(last) if steps == 1 else last - last * i / (steps - 1) for i in range(steps)]
        return ts, [self.sigma_at(t) for t in ts] + [0.0]


class GenerationRequest(BaseModel):
    prompt: str
    model: Optional[str] = None
    negative_prompt: str = ""
    n: int = 1
    steps: Optional[int] = None
    seed: Optional[int] = None
    size: Optional[str] = None
    guidance_scale: Optional[float] = None
    sampler: Optional[str] = None
    response_format: str = "b64_json"


class BadRequest(Exception):
    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


class IdentityPipeline:
    def __init__(self, model_dir: str):
        with open(f"{model_dir}/model.yaml", encoding="utf-8") as f:
            self.spec = yaml.safe_load(f)
        if self.spec["kind"] != "pixel" or self.spec["tokenizer"]["type"] != "words":
            raise SystemExit("this peer serves pixel models with a words tokenizer only")
        self.name = model_dir.rstrip("/").split("/")[-1]
        tok = self.spec["tokenizer"]
        self.tokenizer = WordsTokenizer(f"{model_dir}/{tok['vocab']}", int(tok["max_length"]))
        self.schedule = Schedule(self.spec["schedule"])
        files = self.spec["files"]
        self.text_encoder = torch.jit.load(f"{model_dir}/{files['text_encoder']}").eval()
        self.denoiser = torch.jit.load(f"{model_dir}/{files['denoiser']}").eval()
        self.sizes = list(self.spec["sizes"])
        self.cond_channels = int(self.spec.get("image_cond_channels", 0))
        self.defaults = self.spec.get("defaults", {})

    def check(self, req: GenerationRequest):
        if req.model and req.model != self.name:
            raise BadRequest("model", f"model '{req.model}' does not exist")
        size = req.size or self.sizes[0]
        if size not in self.sizes:
            raise BadRequest("size", f"size {size} is not one of {', '.join(self.sizes)}")
        steps = req.steps if req.steps is not None else int(self.defaults.get("steps", 20))
        if not 1 <= steps <= 150:
            raise BadRequest("steps", "'steps' must be in 1..150")
        if not 1 <= req.n <= 10:
            raise BadRequest("n", "'n' must be in 1..10")
        if req.sampler not in (None, "euler", "Euler"):
            raise BadRequest("sampler", "this peer implements euler only")
        g = req.guidance_scale
        if g is None:
            g = float(self.defaults.get("guidance_scale", 7.5))
        if not 0 <= g <= 30:
            raise BadRequest("guidance_scale", "'guidance_scale' must be in 0..30")
        w, h = (int(v) for v in size.split("x"))
        if req.seed is not None and not 0 <= req.seed <= 2**53:
            raise BadRequest("seed", "'seed' must be in 0..2^53")
        seed = req.seed if req.seed is not None else random.getrandbits(53)
        return w, h, steps, g, seed

    def generate(self, req: GenerationRequest, w: int, h: int, steps: int, guidance: float,
                 seed: int) -> List[Image.Image]:
        ids = torch.tensor([self.tokenizer.encode(req.prompt),
                            self.tokenizer.encode(req.negative_prompt)], dtype=torch.int64)
        hidden = self.text_encoder(ids).float()
        cond, uncond = hidden[0:1], hidden[1:2]
        ts, sigmas = self.schedule.euler_plan(steps)
        noise = torch.cat([torch.randn((1, 3, h, w), generator=torch.Generator().manual_seed(
            seed + i)) for i in range(req.n)])
        x = noise * sigmas[0]
        image_cond = torch.zeros((req.n, self.cond_channels, h, w))
        cfg = guidance != 1.0
        for i, t in enumerate(ts):
            s, s_next = sigmas[i], sigmas[i + 1]
            x_in = x * (1.0 / math.sqrt(s * s + 1.0))
            tt = torch.full((req.n,), t, dtype=torch.float32)
            if cfg:
                out = self.denoiser(torch.cat([x_in, x_in]), torch.cat([tt, tt]),
                                    torch.cat([cond.expand(req.n, -1, -1),
                                               uncond.expand(req.n, -1, -1)]),
                                    torch.cat([image_cond, image_cond])).float()
                pc, pu = out[:req.n], out[req.n:]
                pred = pu + (pc - pu) * guidance
            else:
                pred = self.denoiser(x_in, tt, cond.expand(req.n, -1, -1), image_cond).float()
            if self.schedule.eps:
                denoised = x - pred * s
            else:
                s2 = s * s + 1.0
                denoised = x / s2 - pred * (s / math.sqrt(s2))
            x = x + (x - denoised) / s * (s_next - s)
        u8 = ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
        return [Image.fromarray(u8[i].contiguous().numpy(), "RGB") for i in range(req.n)]


def png_base64(img: Image.Image, parameters: dict) -> str:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", json.dumps(parameters))
    buf = io.BytesIO()
    # zlib's fastest level, as Kiln's encoder uses, so that both pay the same for compression.
    img.save(buf, format="PNG", pnginfo=info, compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def error(status: int, param: Optional[str], message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {
        "message": message, "type": "invalid_request_error", "param": param, "code": None}})


def make_app(pipeline: IdentityPipeline) -> FastAPI:
    app = FastAPI()

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, exc: RequestValidationError):
        return error(400, None, str(exc))

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    # A plain `def` endpoint: FastAPI runs it on its thread pool, as it would any blocking model.
    @app.post("/v1/images/generations")
    def generations(req: GenerationRequest):
        try:
            w, h, steps, guidance, seed = pipeline.check(req)
        except BadRequest as e:
            return error(400, e.param, str(e))
        with torch.inference_mode():
            images = pipeline.generate(req, w, h, steps, guidance, seed)
        data = []
        for i, img in enumerate(images):
            params = {"prompt": req.prompt, "negative_prompt": req.negative_prompt,
                      "model": pipeline.name, "steps": steps, "guidance_scale": guidance,
                      "sampler": "euler", "seed": seed + i, "size": f"{w}x{h}"}
            data.append({"b64_json": png_base64(img, params), "seed": seed + i})
        return {"created": int(time.time()), "data": data, "model": pipeline.name,
                "steps": steps, "sampler": "euler", "guidance_scale": guidance,
                "size": f"{w}x{h}"}

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--access-log", action="store_true", help="log every request (off: fastest)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipeline = IdentityPipeline(args.model_dir)
    # uvloop and httptools, as uvicorn[standard] deployments run it (named, so that a missing
    # package is an error rather than a silent fall-back to asyncio's loop and h11).
    uvicorn.run(make_app(pipeline), host=args.host, port=args.port, workers=1, loop="uvloop",
                http="httptools", access_log=args.access_log, log_level="warning")


if __name__ == "__main__":
    main()
