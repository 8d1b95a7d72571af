"""Writes docs/tiny-shapes-grid.png: held-out prompts (top rows) and edits (bottom rows) from the
exported model, each with its text under it.

.venv/bin/python tools/shapes/grid.py --model models/tiny-shapes --out docs/tiny-shapes-grid.png
"""
import argparse
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import data
import evaluate as E
from sample import Sampler

CELL, SCALE, TEXT_H = 176, 4, 44


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    s = Sampler(a.model)
    prompts = E.heldout_prompts(8, seed=21)
    imgs = s.generate([p["prompt"] for p in prompts], [p["seed"] for p in prompts], 20, 4.0)
    edits = E.heldout_edits(4, seed=23)
    srcs = [data.render(*e["source"], e["size"]) for e in edits]
    outs = s.generate([e["instruction"] for e in edits], [e["seed"] for e in edits], 20, 2.5,
                      sources=srcs, image_guidance=2.5)
    cells = [(img, p["prompt"]) for img, p in zip(imgs, prompts)]
    for src, out, e in zip(srcs, outs, edits):
        cells += [(src, "source"), (out, e["instruction"])]
    cols = 4
    rows = (len(cells) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * CELL, rows * (CELL + TEXT_H)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (img, text) in enumerate(cells):
        x, y = (i % cols) * CELL, (i // cols) * (CELL + TEXT_H)
        big = Image.fromarray(np.kron(img, np.ones((SCALE, SCALE, 1), np.uint8)))
        sheet.paste(big, (x + (CELL - 32 * SCALE) // 2, y + 8))
        for j, line in enumerate(textwrap.wrap(text, 28)[:3]):
            draw.text((x + 6, y + 32 * SCALE + 12 + 11 * j), line, fill=(0, 0, 0), font=font)
    sheet.save(a.out)


if __name__ == "__main__":
    main()
