"""Analytic quality checks for tiny-shapes (no learned model involved).

  evaluate.py selftest                       the checker on clean renders (must be ~100%)
  evaluate.py model --model models/tiny-shapes [--n 240] [--edits 120] [--out eval.json]
  evaluate.py check --image out.png --prompt "a red circle ..."
  evaluate.py check-edit --source a.png --image b.png --instruction "make it blue"
"""
import argparse
import json
import random
import struct
import sys
import zlib

import numpy as np

import data

PALETTE = {k: np.array(v, np.float32) for k, v in data.COLORS.items()}
BGS = {k: np.array(v, np.float32) for k, v in data.BACKGROUNDS.items()}


def nearest(rgb, table):
    return min(table, key=lambda k: float(np.sum((table[k] - rgb) ** 2)))


def analyse(img):
    """img uint8 [32,32,3] -> dict of attributes (None where no foreground is found)."""
    f = img.astype(np.float32)
    border = np.concatenate([f[0], f[-1], f[:, 0], f[:, -1]])
    bg_rgb = np.median(border, axis=0)
    bg = nearest(bg_rgb, BGS)
    dist = np.sqrt(np.sum((f - BGS[bg]) ** 2, axis=2))
    mask = dist > 70
    out = {"background": bg, "color": None, "shape": None, "position": None, "size": None}
    if mask.sum() < 6:
        return out
    strong = dist >= np.percentile(dist[mask], 50)
    out["color"] = nearest(np.median(f[mask & strong], axis=0), PALETTE)
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
    out["position"] = min(data.POSITIONS, key=lambda p: (data.POSITIONS[p][0] - cx) ** 2 +
                          (data.POSITIONS[p][1] - cy) ** 2)
    # Shape from the corners of the bounding box of the solid part: a square fills all four,
    # an upward triangle only the bottom two, a circle none.
    cov = np.clip(dist / max(1.0, float(np.sqrt(np.sum((PALETTE[out["color"]] - BGS[bg]) ** 2)))),
                  0, 1)
    core = cov > 0.5
    if core.sum() < 4:
        core = mask
    cys, cxs = np.nonzero(core)
    y0, y1, x0, x1 = cys.min(), cys.max(), cxs.min(), cxs.max()
    top = (cov[y0, x0] + cov[y0, x1]) / 2
    bottom = (cov[y1, x0] + cov[y1, x1]) / 2
    out["corners"] = (round(float(top), 2), round(float(bottom), 2))
    if top > 0.5 and bottom > 0.35:
        out["shape"] = "square"
    elif bottom > 0.35:
        out["shape"] = "triangle"
    else:
        out["shape"] = "circle"
    out["size"] = "large" if mask.sum() > 100 else "small"
    return out


def parse_prompt(text):
    """Attributes named in a caption (the data set's words)."""
    words = data.tokenize_words(text)
    want = {}
    for w in words:
        if w in data.SHAPES:
            want["shape"] = w
        elif w in data.COLORS and "color" not in want:
            want["color"] = w
    for i, w in enumerate(words):
        if w == "background" and i > 0 and words[i - 1] in data.BACKGROUNDS:
            want["background"] = words[i - 1]
        if w in data.BACKGROUNDS and i + 1 < len(words) and words[i + 1] == "background":
            want["background"] = w
    if "background" not in want:
        for w in words:
            if w in data.BACKGROUNDS:
                want["background"] = w
    for w in words:
        if w in ("left", "right", "top", "bottom", "center"):
            want["position"] = w
        if w == "middle":
            want["position"] = "center"
    return want


def check_prompt(img, prompt):
    got = analyse(img)
    want = parse_prompt(prompt)
    return {k: {"want": v, "got": got[k], "ok": got[k] == v} for k, v in want.items()}


def parse_edit(instruction):
    words = data.tokenize_words(instruction)
    if "background" in words:
        return "background", next(w for w in words if w in data.BACKGROUNDS)
    if "move" in words:
        return "position", next(w for w in words if w in data.POSITIONS)
    if any(w in ("turn", "into") for w in words) or (words[-1] in data.SHAPES and "make" in words
                                                      and not any(w in data.COLORS for w in words)):
        return "shape", words[-1]
    return "color", next(w for w in words if w in data.COLORS)


def check_edit(source, image, instruction):
    src, out = analyse(source), analyse(image)
    attr, value = parse_edit(instruction)
    changed = out[attr] == value
    kept = all(out[k] == src[k] for k in ("shape", "color", "position", "background") if k != attr)
    return {"attribute": attr, "want": value, "source": src, "result": out, "changed": changed,
            "kept": kept, "ok": changed and kept}


# ---- PNG I/O without extra packages ------------------------------------------------------

def read_png(path):
    raw = open(path, "rb").read()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w, h, ctype = 8, b"", 0, 0, 0
    while pos < len(raw):
        n, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        body = raw[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), "only 8-bit RGB/RGBA"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    ch = 3 if ctype == 2 else 4
    data_ = zlib.decompress(idat)
    stride = w * ch
    img = np.zeros((h, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        ft = data_[y * (stride + 1)]
        line = np.frombuffer(data_, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for i in range(stride):
            a = cur[i - ch] if i >= ch else 0
            b = prev[i]
            c = prev[i - ch] if i >= ch else 0
            if ft == 0:
                p = 0
            elif ft == 1:
                p = a
            elif ft == 2:
                p = b
            elif ft == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (line[i] + p) & 255
        img[y] = cur
        prev = cur
    return img.reshape(h, w, ch)[:, :, :3].astype(np.uint8)


def write_png(path, img):
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


# ---- Held-out sets -----------------------------------------------------------------------

def heldout_prompts(n, seed=7):
    rng = random.Random(seed)
    tuples = [t for t in data.all_tuples() if data.is_heldout(t)]
    out = []
    for i in range(n):
        t = tuples[i % len(tuples)]
        size = rng.choice(list(data.SIZES))
        out.append({"prompt": data.caption(rng, *t, size), "tuple": t, "size": size,
                    "seed": 1000 + i})
    return out


def heldout_edits(n, seed=11):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        src, size, instr, dst, kind, value = data.sample_edit(rng, True)
        out.append({"source": src, "size": size, "instruction": instr, "target": dst,
                    "kind": kind, "seed": 2000 + i})
    return out


def score_model(model_dir, n, n_edits, guidance, image_guidance, edit_guidance, steps=20):
    from sample import Sampler
    s = Sampler(model_dir)
    prompts = heldout_prompts(n)
    imgs = []
    for i in range(0, n, 60):
        chunk = prompts[i:i + 60]
        imgs.extend(s.generate([p["prompt"] for p in chunk], [p["seed"] for p in chunk], steps,
                               guidance))
    tally = {k: 0 for k in ("color", "shape", "position", "background")}
    for p, img in zip(prompts, imgs):
        r = check_prompt(img, p["prompt"])
        for k in tally:
            tally[k] += int(r.get(k, {"ok": False})["ok"])
    result = {k: v / n for k, v in tally.items()}
    edits = heldout_edits(n_edits)
    srcs = [data.render(*e["source"], e["size"]) for e in edits]
    outs = []
    for i in range(0, n_edits, 60):
        chunk = edits[i:i + 60]
        outs.extend(s.generate([e["instruction"] for e in chunk], [e["seed"] for e in chunk], steps,
                               edit_guidance, sources=srcs[i:i + 60], image_guidance=image_guidance))
    ok = changed = kept = 0
    for e, src, out in zip(edits, srcs, outs):
        r = check_edit(src, out, e["instruction"])
        ok += r["ok"]
        changed += r["changed"]
        kept += r["kept"]
    result.update({"edit_ok": ok / n_edits, "edit_changed": changed / n_edits,
                   "edit_kept": kept / n_edits, "prompts": n, "edits": n_edits,
                   "guidance_scale": guidance, "image_guidance_scale": image_guidance,
                   "edit_guidance_scale": edit_guidance,
                   "steps": steps, "sampler": "euler"})
    return result, imgs, prompts


def selftest():
    total = good = 0
    for t in data.all_tuples():
        for size in data.SIZES:
            r = analyse(data.render(*t, size))
            total += 1
            good += r["shape"] == t[0] and r["color"] == t[1] and r["position"] == t[2] and \
                r["background"] == t[3]
    print(json.dumps({"clean_renders": total, "all_attributes_correct": good / total}))
    return good / total


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("selftest")
    m = sub.add_parser("model")
    m.add_argument("--model", required=True)
    m.add_argument("--n", type=int, default=240)
    m.add_argument("--edits", type=int, default=120)
    m.add_argument("--guidance", type=float, default=4.0)
    m.add_argument("--image-guidance", type=float, default=2.5)
    m.add_argument("--edit-guidance", type=float, default=2.5)
    m.add_argument("--out")
    c = sub.add_parser("check")
    c.add_argument("--image", required=True)
    c.add_argument("--prompt", required=True)
    e = sub.add_parser("check-edit")
    e.add_argument("--source", required=True)
    e.add_argument("--image", required=True)
    e.add_argument("--instruction", required=True)
    a = ap.parse_args()
    if a.cmd == "selftest":
        sys.exit(0 if selftest() > 0.99 else 1)
    if a.cmd == "model":
        r, _, _ = score_model(a.model, a.n, a.edits, a.guidance, a.image_guidance, a.edit_guidance)
        print(json.dumps(r, indent=1))
        if a.out:
            json.dump(r, open(a.out, "w"), indent=1)
    elif a.cmd == "check":
        r = check_prompt(read_png(a.image), a.prompt)
        print(json.dumps({"ok": all(v["ok"] for v in r.values()), "attributes": r}))
    else:
        r = check_edit(read_png(a.source), read_png(a.image), a.instruction)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
