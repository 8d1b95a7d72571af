#!/usr/bin/env python3
"""The clients people already use, against a running `kiln serve`:

- webuiapi (the common Python client of AUTOMATIC1111's /sdapi/v1): models and the default
  checkpoint, txt2img with batches and iterations, img2img on an instruction-edit model,
  samplers, schedulers, upscalers, progress, interrupt and skip, refusals as its RuntimeError;
- the official openai package: model listing, generations (b64_json and url), edits, and errors
  as openai.NotFoundError / openai.BadRequestError.

Usage: clients_test.py KILN_BINARY MODELS_DIR   (the test models of tools/make_test_models.py)
"""
import base64
import io
import os
import sys
import threading
import time
import traceback
import urllib.request

import numpy as np
import openai
import webuiapi
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kiln_server import KilnServer  # noqa: E402

FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILURES.append(what)


def expect_error(fn, status, needle, what):
    try:
        fn()
    except RuntimeError as e:  # webuiapi: RuntimeError(status, body)
        check(e.args[0] == status and needle in e.args[1], f"{what}: {e.args[0]} {e.args[1][:160]}")
        return
    check(False, f"{what}: no error")


def source_image():
    img = np.zeros((32, 32, 3), np.uint8)
    img[8:24, 8:24] = (200, 40, 40)
    return Image.fromarray(img)


def wait_for(what, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def run_in_thread(fn):
    out = {}

    def body():
        try:
            out["result"] = fn()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            out["error"] = e
    t = threading.Thread(target=body)
    t.start()
    return t, out


def webuiapi_suite(server):
    api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler a", steps=6)

    names = api.util_get_model_names()
    check({"test-latent", "test-pixel"} <= set(names), f"sd-models lists the models: {names}")
    api.util_set_model("test-latent")
    check(api.util_get_current_model() == "test-latent", "options: the default checkpoint changes")
    check("Euler a" in api.util_get_sampler_names(), "samplers include 'Euler a'")
    check({"automatic", "karras"} <= set(api.util_get_scheduler_names()), "schedulers")
    check(api.get_upscalers() == [], "upscalers: none")
    idle = api.get_progress()
    check(idle["progress"] == 0 and idle["state"]["job_count"] == 0, f"progress when idle: {idle}")

    r = api.txt2img(prompt="a red circle", width=32, height=32, seed=42, batch_size=2, n_iter=2,
                    cfg_scale=4)
    check(len(r.images) == 4 and all(i.size == (32, 32) for i in r.images),
          f"txt2img: batch_size 2 x n_iter 2 = 4 images of 32x32 ({len(r.images)})")
    check(r.info["all_seeds"] == [42, 43, 44, 45], f"info numbers the seeds: {r.info['all_seeds']}")
    check(r.info["sd_model_name"] == "test-latent", "the options' checkpoint was used")
    check(r.parameters["sampler_name"] == "Euler a", "parameters echo the sampler")
    check("Steps: 6, Sampler: Euler a" in r.images[0].info.get("parameters", ""),
          "each PNG carries A1111's infotext")
    # Seed 43 alone is image 1 of the first batch: the same noise, within batching's noise.
    one = api.txt2img(prompt="a red circle", width=32, height=32, seed=43, cfg_scale=4)
    diff = np.abs(np.asarray(one.image, np.int16) - np.asarray(r.images[1], np.int16)).max()
    check(diff <= 2, f"a seed draws the same picture alone and in a batch (max diff {diff})")

    override = api.txt2img(prompt="a blue square", width=16, height=16, seed=1,
                           override_settings={"sd_model_checkpoint": "test-pixel"},
                           sampler_name="DPM++ 2M", scheduler="karras", eta=None)
    check(override.image.size == (16, 16) and override.info["sd_model_name"] == "test-pixel",
          "override_settings.sd_model_checkpoint picks the model for one call")
    check(api.util_get_current_model() == "test-latent", "an override leaves the default alone")

    edit = api.img2img(images=[source_image()], prompt="make it blue", width=32, height=32,
                       seed=3, denoising_strength=1.0, image_cfg_scale=1.5,
                       override_settings={"sd_model_checkpoint": "test-pixel"})
    check(len(edit.images) == 1 and edit.image.size == (32, 32), "img2img on an edit model")
    check(edit.parameters["init_images"] is None, "init_images are not echoed back")

    expect_error(lambda: api.img2img(images=[source_image()], prompt="x", width=32, height=32),
                 400, "denoising_strength", "edit models refuse a partial denoising_strength")
    expect_error(lambda: api.txt2img(prompt="x", width=32, height=32, enable_hr=True),
                 400, "enable_hr", "hires fix is refused by name")
    expect_error(lambda: api.txt2img(prompt="x", width=32, height=32, restore_faces=True),
                 400, "restore_faces", "face restoration is refused by name")
    expect_error(lambda: api.img2img(images=[source_image()], mask_image=source_image(),
                                     prompt="x", width=32, height=32, denoising_strength=1.0),
                 400, "mask", "inpainting masks are refused by name")
    expect_error(lambda: api.txt2img(prompt="x", width=32, height=32, sampler_name="UniPC"),
                 400, "sampler_name", "an unknown sampler is refused by name")
    # webuiapi's set_options returns the body without looking at the status: ask directly.
    resp = api.session.post(api.baseurl + "/options", json={"sd_model_checkpoint": "nope"})
    check(resp.status_code == 404 and resp.json()["error"]["param"] == "sd_model_checkpoint",
          f"options refuse an unknown checkpoint: {resp.status_code}")
    check(api.util_get_current_model() == "test-latent", "a refused option changes nothing")

    # Interrupt: a long call (many iterations, more than the replica batches at once) stops
    # early; what finished comes back. Skip: one iteration of another call is dropped.
    n_iter = 32

    def long_call():
        return api.txt2img(prompt="a red circle", width=32, height=32, steps=150, n_iter=n_iter,
                           seed=9, cfg_scale=4)

    def started():
        q = api.get_progress()
        return q if q["current_task"] and q["progress"] > 0 else None
    t, out = run_in_thread(long_call)
    p = wait_for("progress of the long call", started)
    check(0 < p["progress"] < 1 and p["state"]["job_count"] == n_iter and p["eta_relative"] > 0,
          f"progress reports the caller's call: {p['progress']:.3f}, eta {p['eta_relative']:.2f}")
    api.interrupt()
    t.join(120)
    check("result" in out and len(out["result"].images) < n_iter,
          f"interrupt ends the call early: {len(out['result'].images) if 'result' in out else out}")
    after = api.get_progress()
    check(after["state"]["job_count"] == 0, "nothing in flight after the interrupt")

    t, out = run_in_thread(long_call)
    wait_for("the call to start", started)
    api.skip()
    t.join(180)
    images = len(out["result"].images) if "result" in out else None
    check(images == n_iter - 1, f"skip drops one iteration: {images} of {n_iter}")


def openai_suite(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="test-key", max_retries=0)
    ids = [m.id for m in client.models.list()]
    check({"test-latent", "test-pixel"} <= set(ids), f"models.list: {ids}")
    check(client.models.retrieve("test-pixel").id == "test-pixel", "models.retrieve")

    r = client.images.generate(model="test-pixel", prompt="a red circle", n=2, size="32x32",
                               response_format="b64_json", extra_body={"seed": 5, "steps": 4})
    imgs = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in r.data]
    check(len(imgs) == 2 and all(i.size == (32, 32) for i in imgs), "images.generate (b64_json)")

    r = client.images.generate(model="test-pixel", prompt="a red circle", size="16x16",
                               response_format="url")
    with urllib.request.urlopen(r.data[0].url, timeout=30) as f:
        check(Image.open(io.BytesIO(f.read())).size == (16, 16), "images.generate (url)")

    buf = io.BytesIO()
    source_image().save(buf, format="PNG")
    e = client.images.edit(model="test-pixel", image=("source.png", buf.getvalue(), "image/png"),
                           prompt="make it blue", size="32x32", extra_body={"seed": 2})
    check(len(e.data) == 1 and Image.open(io.BytesIO(base64.b64decode(e.data[0].b64_json))).size
          == (32, 32), "images.edit")

    try:
        client.images.generate(model="no-such-model", prompt="x")
        check(False, "unknown model: no error")
    except openai.NotFoundError as err:
        check(err.code == "model_not_found", f"unknown model -> NotFoundError ({err.code})")
    try:
        client.images.generate(model="test-pixel", prompt="x", size="33x33")
        check(False, "bad size: no error")
    except openai.BadRequestError as err:
        check(err.param == "size", f"bad size -> BadRequestError naming {err.param}")
    try:
        client.images.edit(model="test-pixel", image=("x.png", b"not an image", "image/png"),
                           prompt="x")
        check(False, "bad image: no error")
    except openai.BadRequestError as err:
        check(err.param == "image", f"bad image -> BadRequestError naming {err.param}")


def main():
    kiln, models = sys.argv[1], sys.argv[2]
    with KilnServer(kiln, models) as server:
        for suite in (webuiapi_suite, openai_suite):
            try:
                suite(server)
            except Exception:  # noqa: BLE001 - a crash is a failure with its trace
                traceback.print_exc()
                FAILURES.append(f"{suite.__name__} crashed")
        if FAILURES:
            print("--- server log ---\n" + server.tail())
    if FAILURES:
        print(f"{len(FAILURES)} FAILED: " + "; ".join(FAILURES))
        return 1
    print("all client checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
