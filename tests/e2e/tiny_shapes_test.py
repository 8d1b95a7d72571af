#!/usr/bin/env python3
"""The shipped tiny-shapes model through Kiln's C++ path: `kiln generate` on held-out prompts and
edits, scored by the analytic checker of tools/shapes/evaluate.py.

Prompt attributes and edits must each be >= 85% correct (the targets of MODEL_CARD.md).

Usage: tiny_shapes_test.py KILN_BINARY MODELS_DIR
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "shapes"))
import data  # noqa: E402
import evaluate  # noqa: E402

THRESHOLD = 0.85


def generate(kiln, models, prompt, seed, out, image=None):
    cmd = [kiln, "generate", "--models", models, "--model", "tiny-shapes", "--prompt", prompt,
           "--seed", str(seed), "--output", out]
    if image:
        cmd += ["--image", image, "--edit", "--guidance", "2.5"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return evaluate.read_png(out)


def main():
    kiln, models = sys.argv[1], sys.argv[2]
    if not os.path.exists(os.path.join(models, "tiny-shapes", "model.yaml")):
        print(f"FAIL: {models}/tiny-shapes is missing")
        return 1
    tmp = tempfile.mkdtemp(prefix="kiln_shapes_")
    prompts = evaluate.heldout_prompts(20, seed=3)
    attr_ok = attr_total = 0
    for i, p in enumerate(prompts):
        img = generate(kiln, models, p["prompt"], p["seed"], os.path.join(tmp, f"p{i}.png"))
        r = evaluate.check_prompt(img, p["prompt"])
        attr_ok += sum(v["ok"] for v in r.values())
        attr_total += len(r)
        print(p["prompt"], "->", {k: v["got"] for k, v in r.items()})
    edits = evaluate.heldout_edits(10, seed=5)
    edit_ok = 0
    for i, e in enumerate(edits):
        src_path = os.path.join(tmp, f"s{i}.png")
        src = data.render(*e["source"], e["size"])
        evaluate.write_png(src_path, src)
        out = generate(kiln, models, e["instruction"], e["seed"], os.path.join(tmp, f"e{i}.png"),
                       image=src_path)
        r = evaluate.check_edit(src, out, e["instruction"])
        edit_ok += r["ok"]
        print(e["instruction"], "on", e["source"], "->", r["result"], "ok" if r["ok"] else "FAILED")
    prompt_rate = attr_ok / attr_total
    edit_rate = edit_ok / len(edits)
    print(f"prompt attributes correct: {attr_ok}/{attr_total} = {prompt_rate:.2%}")
    print(f"edits correct: {edit_ok}/{len(edits)} = {edit_rate:.2%}")
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
    passed = prompt_rate >= THRESHOLD and edit_rate >= THRESHOLD
    print(f"{int(passed)} passed, {int(not passed)} failed")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
