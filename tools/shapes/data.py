"""Procedural data for tiny-shapes: 32x32 images of one shape, captions, and edit triples.

Everything is deterministic. Attribute tuples (shape, colour, position, background) whose
index hash falls in HELDOUT are never used for training; evaluation uses only those.
"""
import functools
import itertools
import random

import numpy as np

SIZE = 32
SHAPES = ["circle", "square", "triangle"]
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 200),
    "orange": (250, 140, 20),
}
BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15), "gray": (128, 128, 128)}
POSITIONS = {"center": (16, 16), "left": (8, 16), "right": (24, 16), "top": (16, 8),
             "bottom": (16, 24)}
POSITION_PHRASES = {"center": ["in the center", "in the middle"], "left": ["on the left"],
                    "right": ["on the right"], "top": ["at the top"], "bottom": ["at the bottom"]}
SIZES = {"small": 4.5, "large": 7.0}


def all_tuples():
    return list(itertools.product(SHAPES, COLORS, POSITIONS, BACKGROUNDS))


def is_heldout(t):
    s, c, p, b = t
    i = (SHAPES.index(s) + 2 * list(COLORS).index(c) + 3 * list(POSITIONS).index(p)
         + 5 * list(BACKGROUNDS).index(b))
    return i % 7 == 0


@functools.lru_cache(maxsize=None)
def render(shape, color, position, background, size="large"):
    """RGB uint8 [32,32,3], anti-aliased by 4x supersampling."""
    ss = 4
    n = SIZE * ss
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32)
    xs = (xs + 0.5) / ss
    ys = (ys + 0.5) / ss
    cx, cy = POSITIONS[position]
    r = SIZES[size]
    if shape == "circle":
        mask = (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    elif shape == "square":
        h = r * 0.88
        mask = (np.abs(xs - cx) <= h) & (np.abs(ys - cy) <= h)
    elif shape == "triangle":
        # Upward triangle inscribed around the centre.
        top = cy - r
        bottom = cy + r * 0.8
        half = (ys - top) / (bottom - top) * r * 1.1
        mask = (ys >= top) & (ys <= bottom) & (np.abs(xs - cx) <= half)
    else:
        raise ValueError(shape)
    cov = mask.reshape(SIZE, ss, SIZE, ss).mean(axis=(1, 3))[..., None]
    fg = np.array(COLORS[color], np.float32)
    bg = np.array(BACKGROUNDS[background], np.float32)
    img = cov * fg + (1 - cov) * bg
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def caption(rng, shape, color, position, background, size):
    pos = rng.choice(POSITION_PHRASES[position])
    templates = [
        "a {size} {color} {shape} {pos} on a {bg} background",
        "a {color} {shape} {pos}, {bg} background",
        "{size} {color} {shape} {pos} on {bg}",
        "a {color} {shape} on a {bg} background {pos}",
        "{color} {shape}, {size}, {pos}, {bg} background",
    ]
    return rng.choice(templates).format(size=size, color=color, shape=shape, pos=pos,
                                        bg=background)


EDIT_KINDS = ["color", "background", "move", "shape"]


def edit_instruction(rng, kind, src, value):
    shape = src[0]
    if kind == "color":
        return rng.choice([f"make the {shape} {value}", f"make it {value}",
                           f"change the color to {value}"])
    if kind == "background":
        return rng.choice([f"make the background {value}", f"change the background to {value}"])
    if kind == "move":
        return rng.choice([f"move it to the {value}", f"move the {shape} to the {value}"])
    if kind == "shape":
        return rng.choice([f"turn it into a {value}", f"make it a {value}"])
    raise ValueError(kind)


def apply_edit(src, kind, value):
    s, c, p, b = src
    if kind == "color":
        return (s, value, p, b)
    if kind == "background":
        return (s, c, p, value)
    if kind == "move":
        return (s, c, value, b)
    return (value, c, p, b)


def edit_choices(src, kind):
    s, c, p, b = src
    if kind == "color":
        return [x for x in COLORS if x != c]
    if kind == "background":
        return [x for x in BACKGROUNDS if x != b]
    if kind == "move":
        return [x for x in POSITIONS if x != p]
    return [x for x in SHAPES if x != s]


def sample_edit(rng, heldout, kinds=EDIT_KINDS):
    """(source tuple, size, instruction, target tuple, kind, value) with both tuples in the split;
    `kinds` lists the edit kinds to draw from (repeat one to draw it more often)."""
    while True:
        src = rng.choice(all_tuples())
        kind = rng.choice(kinds)
        value = rng.choice(edit_choices(src, kind))
        dst = apply_edit(src, kind, value)
        if is_heldout(src) == heldout or is_heldout(dst) == heldout:
            if heldout or (not is_heldout(src) and not is_heldout(dst)):
                size = rng.choice(list(SIZES))
                return src, size, edit_instruction(rng, kind, src, value), dst, kind, value


def vocabulary():
    words = set()
    rng = random.Random(0)
    for t in all_tuples():
        for size in SIZES:
            for _ in range(12):
                words.update(tokenize_words(caption(rng, *t, size)))
    for _ in range(4000):
        e = sample_edit(rng, False)
        words.update(tokenize_words(e[2]))
    words.update(POSITIONS)
    return ["<pad>", "<bos>", "<eos>", "<unk>"] + sorted(words)


def tokenize_words(text):
    """The `words` tokenizer of docs/model-repository.md, without specials."""
    out, cur = [], []
    for ch in text:
        if ch.isascii() and ch.isalnum():
            cur.append(ch.lower())
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def encode(text, vocab_index, max_length):
    ids = [vocab_index["<bos>"]] + [vocab_index.get(w, vocab_index["<unk>"])
                                    for w in tokenize_words(text)] + [vocab_index["<eos>"]]
    if len(ids) > max_length:
        ids = ids[:max_length]
        ids[-1] = vocab_index["<eos>"]
    return ids + [vocab_index["<pad>"]] * (max_length - len(ids))
