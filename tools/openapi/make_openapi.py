#!/usr/bin/env python3
"""Writes web/openapi.json, the OpenAPI 3.1 description of every route Kiln serves (served at
GET /openapi.json). Edit this file, not the JSON, and run it after changing a route, a field or a
status code: `python3 tools/openapi/make_openapi.py` (or `--check` to fail when the JSON is stale,
as CTest's OpenApi.DescriptionIsUpToDate does). src/api/openapi_test.cc checks that the routes
match the router; tests/e2e/schemathesis_test.py checks the server against the description.
"""
import json
import os
import sys

ULID = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$"
MAX_SEED = 9007199254740992  # 2^53


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def rref(name):
    return {"$ref": f"#/components/responses/{name}"}


def nullable(schema):
    s = dict(schema)
    t = s.get("type")
    if isinstance(t, list):
        if "null" not in t:
            s["type"] = t + ["null"]
    elif t is not None:
        s["type"] = [t, "null"]
    if "enum" in s and None not in s["enum"]:
        s["enum"] = s["enum"] + [None]
    return s


def json_content(schema):
    return {"application/json": {"schema": schema}}


# ---- Shared request fields (src/api/openai_params.cc) -------------------------------------

def common_fields(form=False):
    """The fields both OpenAI endpoints (and jobs) accept. `form`: multipart text fields."""
    f = {
        "prompt": {
            "type": "string", "minLength": 1, "maxLength": 1000,
            "description": "Required, 1..1000 characters.",
            "examples": ["a red square on a white background"],
        },
        "negative_prompt": {"type": "string", "maxLength": 1000,
                            "description": "Kiln extension."},
        "model": {"type": "string", "maxLength": 256,
                  "description": "A model id from GET /v1/models; empty or absent: the first "
                                 "loaded model.",
                  "examples": ["test-pixel"]},
        "n": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
        "size": {"type": "string",
                 "description": "`WxH` (each side 1..16384) that the model supports, or `auto` "
                                "(the model's first size).",
                 "examples": ["32x32", "auto"]},
        "quality": {"type": "string", "maxLength": 256, "description": "Accepted and ignored."},
        "style": {"type": "string", "maxLength": 256, "description": "Accepted and ignored."},
        "user": {"type": "string", "maxLength": 256, "description": "Accepted and ignored."},
        "response_format": {"type": "string", "enum": ["b64_json", "url"],
                            "default": "b64_json"},
        "output_format": {"type": "string", "enum": ["png"], "default": "png"},
        "steps": {"type": "integer", "minimum": 1, "maximum": 150,
                  "description": "Kiln extension; default: the model's."},
        "guidance_scale": {"type": "number", "minimum": 0, "maximum": 30,
                           "description": "Kiln extension; default: the model's."},
        "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED,
                 "description": "Kiln extension; default: random. Image i uses seed + i."},
        "sampler": {"type": "string", "maxLength": 64,
                    "description": "Kiln extension: euler, euler_a, ddim or dpmpp_2m, each "
                                   "optionally with _karras; A1111 names (\"DPM++ 2M Karras\") "
                                   "are accepted too.",
                    "examples": ["euler", "dpmpp_2m_karras", "Euler a"]},
        "priority": {"type": "integer", "minimum": -10, "maximum": 10, "default": 0,
                     "description": "Kiln extension: within the request's class, higher first."},
        "deadline_ms": {"type": "integer", "minimum": 1, "maximum": 604800000,
                        "description": "Kiln extension: wanted within this many ms from now; "
                                       "429 at once when the prediction says it cannot be met."},
    }
    if not form:
        # JSON bodies: null is the same as an absent field (prompt stays required).
        for k in list(f):
            if k != "prompt":
                f[k] = nullable(f[k])
    return f


def conditioning_fields(form=False):
    f = {
        "mode": {"type": "string", "enum": ["edit", "img2img"],
                 "description": "Needs an image. Default: edit when the model has the edit task, "
                                "else img2img."},
        "image_guidance_scale": {"type": "number", "minimum": 0, "maximum": 30,
                                 "description": "Mode edit only; default: the model's."},
        "strength": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                     "description": "Mode img2img only; default 0.75."},
    }
    if not form:
        for k in list(f):
            f[k] = nullable(f[k])
    return f


WEBHOOK = {"type": "string", "maxLength": 2048, "format": "uri",
           "description": "http:// or https:// URL (no credentials) POSTed to when the job ends.",
           "examples": ["https://example.com/kiln-hook"]}

IMAGE_FILE = {"type": "string", "format": "binary", "contentMediaType": "image/png",
              "description": "PNG or JPEG file, at most 16 MiB and 4096x4096 pixels."}


def generations_request():
    return {
        "type": "object",
        "description": "Unknown fields are refused with a 400 naming them.",
        "properties": common_fields(),
        "required": ["prompt"],
        "additionalProperties": False,
    }


def edits_form(job):
    props = {}
    props["image"] = IMAGE_FILE
    props["image[]"] = dict(IMAGE_FILE, description="Same as `image` (send exactly one of them).")
    props.update(common_fields(form=True))
    props.update(conditioning_fields(form=True))
    if job:
        props["webhook"] = WEBHOOK
    s = {
        "type": "object",
        "description": ("Unknown parts are refused with a 400; `mask` (inpainting) is refused."
                        if not job else
                        "The /v1/images/edits form: with an `image` file an edit job, without "
                        "one a generation job. Unknown parts are refused with a 400."),
        "properties": props,
        "required": ["prompt"],
        "additionalProperties": False,
    }
    if not job:
        s["anyOf"] = [{"required": ["image"]}, {"required": ["image[]"]}]
    return s


def job_request(batch_line):
    props = common_fields()
    props["image"] = nullable({
        "type": "string",
        "description": "Base64 PNG/JPEG or a data:image/...;base64, URL; makes the job an edit "
                       "or img2img (see mode)." if not batch_line else
                       "Refused on batch lines (text-to-image only) unless empty.",
    })
    props.update(conditioning_fields())
    props["webhook"] = nullable(WEBHOOK)
    if batch_line:
        props["custom_id"] = nullable({"type": "string", "maxLength": 128,
                                       "description": "The caller's id for the line, echoed "
                                                      "in the results."})
    return {
        "type": "object",
        "properties": props,
        "required": ["prompt"],
        "additionalProperties": False,
    }


# ---- A1111 request bodies (src/api/a1111_params.cc kFields) -------------------------------

KIND = {
    "s": {"type": "string"},
    "n": {"type": "number"},
    "i": {"type": "integer"},
    "b": {"type": "boolean"},
    "bi": {"type": ["boolean", "integer"]},
    "o": {"type": "object"},
    "a": {"type": "array"},
}
TXT, IMG, BOTH = 1, 2, 3
# An 8x8 PNG, for examples.
TINY_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mM8ISfHgA0wMeAAg1MCANDKARQfGKMRAA"
            "AAAElFTkSuQmCC")

# (name, kind, routes, extra constraints/description)
A1111_FIELDS = [
    ("prompt", "s", BOTH, {"maxLength": 1000}),
    ("negative_prompt", "s", BOTH, {"maxLength": 1000}),
    ("styles", "a", BOTH, {"maxItems": 0, "description": "Must be empty: Kiln has no saved "
                                                         "prompt styles."}),
    ("seed", "i", BOTH, {"minimum": -1, "maximum": MAX_SEED, "description": "-1 or absent: "
                                                                              "random."}),
    ("subseed", "i", BOTH, {"minimum": -1, "maximum": MAX_SEED,
                            "description": "Reported only."}),
    ("subseed_strength", "n", BOTH, {"const": 0, "description": "Variation seeds are not "
                                                                "supported: must be 0."}),
    ("seed_resize_from_h", "i", BOTH, {"maximum": 0, "description": "Must be <= 0 (seed "
                                                                    "resizing is not supported)."}),
    ("seed_resize_from_w", "i", BOTH, {"maximum": 0, "description": "Must be <= 0 (seed "
                                                                    "resizing is not supported)."}),
    ("sampler_name", "s", BOTH, {"maxLength": 64,
                                 "examples": ["Euler", "Euler a", "DPM++ 2M", "DDIM"]}),
    ("sampler_index", "s", BOTH, {"maxLength": 64, "description": "Deprecated alias of "
                                                                  "sampler_name."}),
    ("scheduler", "s", BOTH, {"description": "automatic, uniform or karras (any case); empty: "
                                             "automatic.",
                              "examples": ["automatic", "Karras"]}),
    ("batch_size", "i", BOTH, {"minimum": 1, "maximum": 10,
                               "description": "batch_size x n_iter is at most 32."}),
    ("n_iter", "i", BOTH, {"minimum": 1, "maximum": 32}),
    ("steps", "i", BOTH, {"minimum": 1, "maximum": 150}),
    ("cfg_scale", "n", BOTH, {"minimum": 0, "maximum": 30}),
    ("width", "i", BOTH, {"minimum": 1, "maximum": 16384,
                          "description": "Must be a size the model supports."}),
    ("height", "i", BOTH, {"minimum": 1, "maximum": 16384,
                           "description": "Must be a size the model supports."}),
    ("restore_faces", "b", BOTH, {"const": False, "description": "Face restoration is not "
                                                                 "available."}),
    ("tiling", "b", BOTH, {"const": False, "description": "Tiling is not supported."}),
    ("do_not_save_samples", "b", BOTH, {}),
    ("do_not_save_grid", "b", BOTH, {}),
    ("eta", "n", BOTH, {"description": "Must be 1 with Euler a and 0 with DDIM."}),
    ("denoising_strength", "n", BOTH, {}),
    ("s_min_uncond", "n", BOTH, {"const": 0, "description": "Must be 0."}),
    ("s_churn", "n", BOTH, {"description": "Must be 0 with Euler."}),
    ("s_tmax", "n", BOTH, {}),
    ("s_tmin", "n", BOTH, {}),
    ("s_noise", "n", BOTH, {"description": "Must be 1 with Euler a."}),
    ("override_settings", "o", BOTH, {
        "properties": {"sd_model_checkpoint": {"type": ["string", "null"],
                                               "description": "The checkpoint (model) to use."}},
        "additionalProperties": False,
        "description": "Only sd_model_checkpoint can be overridden."}),
    ("override_settings_restore_afterwards", "b", BOTH, {}),
    ("refiner_checkpoint", "s", BOTH, {"maxLength": 0, "description": "Must be empty: a refiner "
                                                                      "is not supported."}),
    ("refiner_switch_at", "n", BOTH, {}),
    ("disable_extra_networks", "b", BOTH, {}),
    ("firstpass_image", "s", BOTH, {"maxLength": 0, "description": "Must be empty."}),
    ("comments", "o", BOTH, {}),
    ("force_task_id", "s", BOTH, {"maxLength": 128, "description": "The id /progress reports "
                                                                   "as current_task."}),
    ("script_name", "s", BOTH, {"maxLength": 0, "description": "Must be empty: scripts are not "
                                                               "supported."}),
    ("script_args", "a", BOTH, {}),
    ("send_images", "b", BOTH, {"default": True}),
    ("save_images", "b", BOTH, {"default": False,
                                "description": "Also store the PNGs under images/{id}/{i}.png."}),
    ("alwayson_scripts", "o", BOTH, {"maxProperties": 0, "description": "Must be empty "
                                                                        "(ControlNet, ADetailer, "
                                                                        "... are not supported)."}),
    ("infotext", "s", BOTH, {"maxLength": 0, "description": "Must be empty; send the settings "
                                                            "as fields."}),
    ("enable_hr", "b", TXT, {"const": False, "description": "Hires fix is not supported."}),
    ("firstphase_width", "i", TXT, {}),
    ("firstphase_height", "i", TXT, {}),
    ("hr_scale", "n", TXT, {}),
    ("hr_upscaler", "s", TXT, {}),
    ("hr_second_pass_steps", "i", TXT, {}),
    ("hr_resize_x", "i", TXT, {}),
    ("hr_resize_y", "i", TXT, {}),
    ("hr_checkpoint_name", "s", TXT, {}),
    ("hr_additional_modules", "a", TXT, {}),
    ("hr_sampler_name", "s", TXT, {}),
    ("hr_scheduler", "s", TXT, {}),
    ("hr_prompt", "s", TXT, {}),
    ("hr_negative_prompt", "s", TXT, {}),
    ("init_images", "a", IMG, {"items": {"type": "string"}, "minItems": 1, "maxItems": 1,
                               "description": "Exactly one base64 PNG/JPEG (or data: URL)."}),
    ("resize_mode", "i", IMG, {"const": 0, "description": "Only 0 (just resize)."}),
    ("image_cfg_scale", "n", IMG, {"minimum": 0, "maximum": 30,
                                   "description": "Instruction-edit models only."}),
    ("mask", "s", IMG, {"maxLength": 0, "description": "Must be empty: inpainting is not "
                                                       "supported."}),
    ("mask_blur_x", "i", IMG, {}),
    ("mask_blur_y", "i", IMG, {}),
    ("mask_blur", "i", IMG, {}),
    ("mask_round", "b", IMG, {}),
    ("inpainting_fill", "i", IMG, {}),
    ("inpaint_full_res", "bi", IMG, {}),
    ("inpaint_full_res_padding", "i", IMG, {}),
    ("inpainting_mask_invert", "bi", IMG, {}),
    ("initial_noise_multiplier", "n", IMG, {"const": 1, "description": "Must be 1."}),
    ("latent_mask", "s", IMG, {"maxLength": 0, "description": "Must be empty."}),
    ("include_init_images", "b", IMG, {"description": "Echo init_images in parameters."}),
]


def a1111_request(route):
    props = {}
    for name, kind, routes, extra in A1111_FIELDS:
        if not routes & route:
            continue
        s = dict(KIND[kind])
        s.update(extra)
        if name == "denoising_strength" and route == IMG:
            s.update({"exclusiveMinimum": 0, "maximum": 1,
                      "description": "(0, 1]; must be 1 (or absent) for an instruction-edit "
                                     "model. Default 0.75."})
        if name == "denoising_strength" and route == TXT:
            s["description"] = "Ignored without hires fix."
        const = s.pop("const", "absent")
        s = nullable(s)
        if const != "absent":
            s["enum"] = [const, None]
        props[name] = s
    body = {
        "type": "object",
        "description": "AUTOMATIC1111 1.10's fields; null is accepted for every field. Unknown "
                       "fields, and values asking for what Kiln cannot do, are a 400 naming the "
                       "field.",
        "properties": props,
        "additionalProperties": False,
    }
    if route == IMG:
        body["required"] = ["init_images"]
        body["examples"] = [{"prompt": "make it blue", "init_images": [TINY_PNG], "steps": 4}]
        props["init_images"] = {k: v for k, v in props["init_images"].items()}
        props["init_images"]["type"] = "array"  # null fails: init_images is required
    return body


# ---- Response schemas ---------------------------------------------------------------------

schemas = {}

schemas["Error"] = {
    "type": "object",
    "description": "Every error, OpenAI's shape. `param` names the offending field, header or "
                   "query parameter.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string",
                         "examples": ["invalid_request_error", "not_found_error",
                                      "rate_limit_error", "server_error"]},
                "param": {"type": ["string", "null"]},
                "code": {"type": "string",
                         "examples": ["invalid_value", "not_found", "model_not_found",
                                      "payload_too_large", "unsupported_media_type",
                                      "rate_limited", "unavailable", "internal_error"]},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}

schemas["GenerationsRequest"] = generations_request()
schemas["EditsForm"] = edits_form(job=False)
schemas["JobRequest"] = job_request(batch_line=False)
schemas["JobForm"] = edits_form(job=True)
schemas["GenerationsRequest"]["examples"] = [
    {"prompt": "a red square on a white background", "n": 2, "size": "32x32", "seed": 42}]
schemas["JobRequest"]["examples"] = [
    {"prompt": "a red square on a white background", "steps": 4, "seed": 7},
    {"prompt": "make it blue", "image": TINY_PNG, "mode": "img2img", "strength": 0.5}]
schemas["BatchLine"] = job_request(batch_line=True)
schemas["BatchLine"]["description"] = ("One line of a POST /v1/batches body: a /v1/jobs request "
                                       "(text-to-image only) with an optional custom_id.")

schemas["ImagesResponse"] = {
    "type": "object",
    "properties": {
        "created": {"type": "integer", "description": "Unix seconds."},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "b64_json": {"type": "string", "description": "The PNG, base64 "
                                                                 "(response_format b64_json)."},
                    "url": {"type": "string", "description": "Where to GET the PNG "
                                                            "(response_format url)."},
                    "seed": {"type": "integer"},
                },
                "required": ["seed"],
            },
        },
        "model": {"type": "string"},
        "steps": {"type": "integer"},
        "sampler": {"type": "string"},
        "guidance_scale": {"type": "number"},
        "size": {"type": "string"},
    },
    "required": ["created", "data", "model", "steps", "sampler", "guidance_scale", "size"],
}

schemas["Model"] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "model"},
        "created": {"type": "integer"},
        "owned_by": {"type": "string"},
        "description": {"type": "string"},
        "tasks": {"type": "array", "items": {"type": "string", "enum": ["generate", "edit"]}},
        "sizes": {"type": "array", "items": {"type": "string"}},
        "any_size": {
            "type": ["object", "null"],
            "description": "Besides sizes, any WxH whose sides are multiples of multiple_of "
                           "within min_side..max_side.",
            "properties": {
                "multiple_of": {"type": "integer"},
                "min_side": {"type": "integer"},
                "max_side": {"type": "integer"},
            },
            "required": ["multiple_of", "min_side", "max_side"],
        },
        "architecture": {"type": "string", "examples": ["kiln", "sd1", "sd2", "sdxl",
                                                        "instruct-pix2pix"]},
        "format": {"type": "string", "enum": ["diffusers", "single-file", "torchscript"]},
        "dtype": {"type": "string"},
        "memory_bytes": {"type": ["integer", "null"],
                         "description": "Parameters as loaded; null on a gateway."},
        "max_batch": {"type": "integer"},
        "defaults": {
            "type": "object",
            "properties": {
                "steps": {"type": "integer"},
                "guidance_scale": {"type": "number"},
                "image_guidance_scale": {"type": "number"},
                "sampler": {"type": "string"},
            },
            "required": ["steps", "guidance_scale", "image_guidance_scale", "sampler"],
        },
    },
    "required": ["id", "object", "created", "owned_by", "description", "tasks", "sizes",
                 "any_size", "architecture", "format", "dtype", "memory_bytes", "max_batch",
                 "defaults"],
}

schemas["ModelList"] = {
    "type": "object",
    "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": ref("Model")}},
    "required": ["object", "data"],
}

schemas["Health"] = {
    "type": "object",
    "properties": {"status": {"const": "ok"}},
    "required": ["status"],
}

PART_STATE = {
    "oneOf": [
        {"const": "ready"},
        {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
    ]
}
schemas["Readiness"] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready", "not_ready"]},
        "models": {"type": "object", "additionalProperties": PART_STATE,
                   "description": "Each model folder: \"ready\" or {\"error\": ...}."},
        "store": PART_STATE,
        "queue": PART_STATE,
        "reason": {"type": "string", "description": "Present when no model folder was found."},
    },
    "required": ["status", "models"],
}

schemas["Autoscale"] = {
    "type": "object",
    "properties": {
        "object": {"const": "autoscale"},
        "policy": {
            "type": "object",
            "properties": {
                "target_seconds_per_replica": {"type": "number"},
                "min_replicas": {"type": "integer"},
                "max_replicas": {"type": "integer"},
            },
            "required": ["target_seconds_per_replica", "min_replicas", "max_replicas"],
        },
        "backlog_seconds": {"type": "number"},
        "desired_replicas": {"type": "integer"},
        "models": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "model": {"type": "string"},
                    "backlog_seconds": {"type": "number"},
                    "queued_seconds": {"type": "number"},
                    "running_seconds": {"type": "number"},
                    "queued": {"type": "integer"},
                    "running": {"type": "integer"},
                    "replicas": {"type": "integer"},
                    "desired_replicas": {"type": "integer"},
                },
                "required": ["model", "backlog_seconds", "queued_seconds", "running_seconds",
                             "queued", "running", "replicas", "desired_replicas"],
            },
        },
    },
    "required": ["object", "policy", "backlog_seconds", "desired_replicas", "models"],
}

JOB_STATES = ["queued", "running", "succeeded", "failed", "cancelled"]
UNIX_SECONDS = {"type": ["number", "null"], "description": "Unix seconds; null until it happens."}

schemas["JobRequestSummary"] = {
    "type": "object",
    "description": "The request as stored, with the values Kiln resolved.",
    "properties": {
        "prompt": {"type": "string"},
        "negative_prompt": {"type": "string"},
        "steps": {"type": "integer"},
        "guidance_scale": {"type": "number"},
        "seed": {"type": "integer"},
        "sampler": {"type": "string"},
        "size": {"type": "string"},
        "n": {"type": "integer"},
        "mode": {"type": "string", "enum": ["generate", "edit", "img2img"]},
        "image_guidance_scale": {"type": "number"},
        "strength": {"type": "number"},
    },
}

schemas["Job"] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "job"},
        "model": {"type": "string"},
        "state": {"type": "string", "enum": JOB_STATES},
        "class": {"type": "string", "enum": ["interactive", "async", "batch"]},
        "priority": {"type": "integer"},
        "created_at": UNIX_SECONDS,
        "started_at": UNIX_SECONDS,
        "finished_at": UNIX_SECONDS,
        "attempts": {"type": "integer"},
        "max_attempts": {"type": "integer"},
        "estimated_cost_seconds": {"type": "number"},
        "custom_id": {"type": "string", "description": "Batch jobs whose line had one."},
        "request": ref("JobRequestSummary"),
        "progress": {
            "type": "object",
            "properties": {"step": {"type": "integer"}, "num_steps": {"type": "integer"}},
            "required": ["step", "num_steps"],
        },
        "queue_position": {"type": "integer", "description": "Queued jobs: jobs claimed first."},
        "eta_seconds": {"type": "number", "description": "Jobs not ended: predicted time until "
                                                         "the job ends."},
        "deadline_at": {"type": ["number", "null"], "description": "Unix seconds."},
        "batch_id": {"type": "string"},
        "data": {
            "type": "array",
            "items": {"type": "object", "properties": {"url": {"type": "string"}},
                      "required": ["url"]},
        },
        "error": {
            "type": ["object", "null"],
            "properties": {"message": {"type": "string"}, "code": {"type": "string"}},
            "required": ["message", "code"],
        },
        "webhook": {
            "type": "object",
            "properties": {
                "url": {"type": "string"},
                "state": {"type": "string",
                          "examples": ["waiting", "pending", "delivered", "failed"]},
                "attempts": {"type": "integer"},
                "last_status": {"type": "integer"},
                "last_error": {"type": "string"},
            },
            "required": ["url"],
        },
    },
    "required": ["id", "object", "model", "state", "class", "priority", "created_at",
                 "started_at", "finished_at", "attempts", "max_attempts",
                 "estimated_cost_seconds", "progress", "data", "error"],
}

schemas["JobEvent"] = {
    "type": "object",
    "description": "One Server-Sent Event (the schema describes each event of the stream).",
    "properties": {
        "event": {"type": "string",
                  "enum": JOB_STATES + ["progress", "end"],
                  "description": "A state (data: the job), progress (data: {id, step, "
                                 "num_steps[, preview]}) or end (data: {reason}: the server "
                                 "is stopping)."},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "A JSON document."},
    },
    "required": ["event", "data"],
}

schemas["CancelledJob"] = {
    "allOf": [ref("Job")],
    "type": "object",
    "properties": {"cancel_requested": {"const": True}},
    "required": ["cancel_requested"],
}

schemas["JobList"] = {
    "type": "object",
    "properties": {
        "object": {"const": "list"},
        "data": {"type": "array", "items": ref("Job")},
        "has_more": {"type": "boolean"},
        "next_cursor": {"type": ["string", "null"],
                        "description": "The `after` of the next page; null on the last."},
    },
    "required": ["object", "data", "has_more", "next_cursor"],
}

schemas["Batch"] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "batch"},
        "model": {"type": "string", "description": "The lines' model, or \"mixed\"."},
        "created_at": {"type": "number", "description": "Unix seconds."},
        "status": {"type": "string", "enum": ["queued", "in_progress", "completed"]},
        "request_counts": {
            "type": "object",
            "properties": {k: {"type": "integer"} for k in JOB_STATES + ["total"]},
            "required": JOB_STATES + ["total"],
        },
        "results_url": {"type": "string"},
        "metadata": {"type": "object"},
    },
    "required": ["id", "object", "model", "created_at", "status", "request_counts",
                 "results_url"],
}

schemas["BatchResultLine"] = {
    "type": "object",
    "description": "One line of GET /v1/batches/{id}/results.",
    "properties": {
        "custom_id": {"type": ["string", "null"]},
        "job_id": {"type": "string"},
        "state": {"type": "string", "enum": JOB_STATES},
        "data": {"type": "array", "items": {"type": "object",
                                            "properties": {"url": {"type": "string"}}}},
        "error": {"type": ["object", "null"]},
    },
    "required": ["custom_id", "job_id", "state", "data", "error"],
}

schemas["A1111Txt2ImgRequest"] = a1111_request(TXT)
schemas["A1111Img2ImgRequest"] = a1111_request(IMG)

schemas["A1111ImagesResponse"] = {
    "type": "object",
    "properties": {
        "images": {"type": "array", "items": {"type": "string"},
                   "description": "Base64 PNGs (empty with send_images false)."},
        "parameters": {"type": "object", "description": "The request, with the values Kiln "
                                                        "resolved."},
        "info": {"type": "string", "description": "A JSON document (A1111's info), as a "
                                                  "string."},
    },
    "required": ["images", "parameters", "info"],
}

schemas["A1111Progress"] = {
    "type": "object",
    "properties": {
        "progress": {"type": "number"},
        "eta_relative": {"type": "number"},
        "state": {
            "type": "object",
            "properties": {
                "skipped": {"type": "boolean"},
                "interrupted": {"type": "boolean"},
                "stopping_generation": {"type": "boolean"},
                "job": {"type": "string"},
                "job_count": {"type": "integer"},
                "job_timestamp": {"type": "string"},
                "job_no": {"type": "integer"},
                "sampling_step": {"type": "integer"},
                "sampling_steps": {"type": "integer"},
            },
            "required": ["skipped", "interrupted", "stopping_generation", "job", "job_count",
                         "job_timestamp", "job_no", "sampling_step", "sampling_steps"],
        },
        "current_image": {"type": ["string", "null"], "description": "Base64 PNG preview."},
        "textinfo": {"type": ["string", "null"]},
        "current_task": {"type": ["string", "null"]},
    },
    "required": ["progress", "eta_relative", "state", "current_image", "textinfo",
                 "current_task"],
}

schemas["A1111Options"] = {
    "type": "object",
    "properties": {
        "sd_model_checkpoint": {"type": "string"},
        "sd_checkpoint_hash": {"type": ["string", "null"]},
        "samples_format": {"type": "string"},
        "eta_ancestral": {"type": "number"},
        "eta_ddim": {"type": "number"},
    },
    "required": ["sd_model_checkpoint", "sd_checkpoint_hash", "samples_format", "eta_ancestral",
                 "eta_ddim"],
}

schemas["A1111OptionsUpdate"] = {
    "type": "object",
    "description": "Only sd_model_checkpoint can change; the other options may be sent with "
                   "their current values. Unknown options are a 400.",
    "properties": {
        "sd_model_checkpoint": {"type": "string", "maxLength": 512,
                                "description": "A served model's name (A1111 decorations such "
                                               "as \".safetensors [hash]\" are accepted).",
                                "examples": ["test-pixel"]},
        "sd_checkpoint_hash": {"type": "null"},
        "samples_format": {"const": "png"},
        "eta_ancestral": {"const": 1},
        "eta_ddim": {"const": 0},
    },
    "additionalProperties": False,
}

schemas["A1111SdModel"] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "model_name": {"type": "string"},
        "hash": {"type": ["string", "null"]},
        "sha256": {"type": ["string", "null"]},
        "filename": {"type": "string"},
        "config": {"type": ["string", "null"]},
    },
    "required": ["title", "model_name", "hash", "sha256", "filename", "config"],
}

schemas["A1111Sampler"] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "aliases": {"type": "array", "items": {"type": "string"}},
        "options": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name", "aliases", "options"],
}

schemas["A1111Scheduler"] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "label": {"type": "string"},
        "aliases": {"type": ["array", "null"], "items": {"type": "string"}},
        "default_rho": {"type": "number"},
        "need_inner_model": {"type": "boolean"},
    },
    "required": ["name", "label", "aliases", "default_rho", "need_inner_model"],
}

schemas["A1111Scripts"] = {
    "type": "object",
    "properties": {
        "txt2img": {"type": "array", "items": {"type": "string"}},
        "img2img": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["txt2img", "img2img"],
}

# ---- Responses ----------------------------------------------------------------------------

ERR = json_content(ref("Error"))
RETRY_AFTER = {"description": "Seconds to wait before retrying.",
               "schema": {"type": "integer", "minimum": 0}}

responses = {
    "BadRequest": {"description": "Invalid request: a field, header or query parameter is "
                                  "missing, malformed, out of range or unknown (the error's "
                                  "`param` names it), or the HTTP request itself is malformed.",
                   "content": ERR},
    "Forbidden": {"description": "A user key on an admin route, or the result store refused "
                                 "access (S3 credentials).",
                  "content": ERR},
    "NotFound": {"description": "Not found (`code` model_not_found for an unknown model).",
                 "content": ERR},
    "MethodNotAllowed": {"description": "The path matches another route, which allows other "
                                        "methods.",
                         "headers": {"Allow": {"schema": {"type": "string"}}},
                         "content": ERR},
    "Conflict": {"description": "Conflict with the current state.", "content": ERR},
    "PayloadTooLarge": {"description": "The body is over the endpoint's or the server's limit.",
                        "content": ERR},
    "UnsupportedMediaType": {"description": "Wrong Content-Type (`param`: content-type).",
                             "content": ERR},
    "TooManyRequests": {"description": "Admission refused: the model's queue is full, or "
                                       "`deadline_ms` cannot be met; or the API key's "
                                       "requests_per_minute, concurrent_jobs, "
                                       "queued_seconds or images_per_day is used up (with "
                                       "RateLimit-* headers; no Retry-After when the request "
                                       "alone is over the limit).",
                        "headers": {"Retry-After": RETRY_AFTER},
                        "content": ERR},
    "HeadersTooLarge": {"description": "Request headers (or chunk metadata) over 16 KiB.",
                        "content": ERR},
    "InternalError": {"description": "Internal error.", "content": ERR},
    "Unavailable": {"description": "Unavailable: the model failed to load or has no replica "
                                   "here, the server is shutting down, the queue or store is "
                                   "unreachable, or every image-decoding slot is busy (with "
                                   "Retry-After).",
                    "headers": {"Retry-After": RETRY_AFTER},
                    "content": ERR},
    "GatewayTimeout": {"description": "A deadline passed.", "content": ERR},
    "InsufficientStorage": {"description": "The disk under the data directory (queue or file "
                                           "store) is full.",
                            "content": ERR},
}

CODE_REF = {
    400: "BadRequest", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    409: "Conflict", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
    429: "TooManyRequests", 431: "HeadersTooLarge", 500: "InternalError", 503: "Unavailable",
    504: "GatewayTimeout", 507: "InsufficientStorage",
}
ALWAYS = [400, 431, 500]


def resp(ok, *codes):
    out = dict(ok)
    for c in sorted(set(codes) | set(ALWAYS)):
        if str(c) not in out:
            out[str(c)] = rref(CODE_REF[c])
    return dict(sorted(out.items()))


def ok_json(schema, description="OK", code="200", headers=None):
    r = {"description": description, "content": json_content(schema)}
    if headers:
        r["headers"] = headers
    return {code: r}


def op(op_id, tag, summary, responses_, description=None, parameters=None, body=None):
    o = {"operationId": op_id, "tags": [tag], "summary": summary}
    if description:
        o["description"] = description
    if parameters:
        o["parameters"] = parameters
    if body:
        o["requestBody"] = body
    o["responses"] = responses_
    return o


def path_param(name, description, schema):
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema}


def query_param(name, description, schema):
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


JOB_ID = path_param("id", "The job id (a ULID; anything else is a 400).",
                    {"type": "string", "pattern": ULID,
                     "examples": ["01M81N0P5C40CZMDPTEX41EQ5D"]})
BATCH_ID = path_param("id", "The batch id (a ULID; anything else is a 400).",
                      {"type": "string", "pattern": ULID,
                       "examples": ["01M81N0P5C40CZMDPTEX41EQ5D"]})
LOCATION = {"Location": {"description": "The resource's path.", "schema": {"type": "string"}}}
JOB_LINKS = {
    "GetJob": {"operationId": "getJob", "parameters": {"id": "$response.body#/id"}},
    "CancelJob": {"operationId": "cancelJob", "parameters": {"id": "$response.body#/id"}},
    "GetJobEvents": {"operationId": "getJobEvents", "parameters": {"id": "$response.body#/id"}},
}
BATCH_LINKS = {
    "GetBatch": {"operationId": "getBatch", "parameters": {"id": "$response.body#/id"}},
    "GetBatchResults": {"operationId": "getBatchResults",
                        "parameters": {"id": "$response.body#/id"}},
    "ListBatchJobs": {"operationId": "listJobs",
                      "parameters": {"batch_id": "$response.body#/id"}},
}

paths = {}

# ---- OpenAI images ------------------------------------------------------------------------
paths["/v1/images/generations"] = {"post": op(
    "createImage", "openai", "Generate images (OpenAI images API)",
    resp(ok_json(ref("ImagesResponse"), "The images, once generated."),
         403, 404, 413, 415, 429, 503, 504, 507),
    description="Runs in the interactive class; answers when the images are ready. Body at "
                "most 1 MiB.",
    body={"required": True, "content": json_content(ref("GenerationsRequest"))})}

paths["/v1/images/edits"] = {"post": op(
    "createImageEdit", "openai", "Edit an image (OpenAI images API)",
    resp(ok_json(ref("ImagesResponse"), "The images, once generated."),
         403, 404, 413, 415, 429, 503, 504, 507),
    description="An instruction edit or img2img of the uploaded image. Body at most 24 MiB.",
    body={"required": True, "content": {"multipart/form-data": {
        "schema": ref("EditsForm"),
        "encoding": {"image": {"contentType": "image/png, image/jpeg"},
                     "image[]": {"contentType": "image/png, image/jpeg"}}}}})}

# ---- Models -------------------------------------------------------------------------------
paths["/v1/models"] = {"get": op(
    "listModels", "models", "List the loaded models",
    resp(ok_json(ref("ModelList"))))}
paths["/v1/models/{id}"] = {"get": op(
    "getModel", "models", "Get one model",
    resp(ok_json(ref("Model")), 404, 503),
    description="404 for an unknown model, 503 for one whose folder failed to load.",
    parameters=[path_param("id", "The model id.", {"type": "string", "minLength": 1,
                                                   "examples": ["test-pixel"]})])}

# ---- Operations ---------------------------------------------------------------------------
paths["/healthz"] = {"get": op(
    "getHealth", "operations", "Liveness: 200 while the process serves",
    resp(ok_json(ref("Health"))))}
paths["/readyz"] = {"get": op(
    "getReadiness", "operations", "Readiness: models loaded, store and queue usable",
    resp({"200": {"description": "Ready.", "content": json_content(ref("Readiness"))},
          "503": {"description": "Not ready; each part's state says why.",
                  "content": json_content(ref("Readiness"))}}))}
paths["/v1/autoscale"] = {"get": op(
    "getAutoscale", "operations", "Backlog and desired replicas per model",
    resp(ok_json(ref("Autoscale")), 503),
    description="No query parameters (any is a 400). 503 when the queue cannot be read.")}
paths["/metrics"] = {"get": op(
    "getMetrics", "operations", "Prometheus metrics",
    resp({"200": {"description": "Prometheus text exposition format 0.0.4 (Content-Type: "
                                 "text/plain; version=0.0.4; charset=utf-8).",
                  "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}}}},
         404),
    description="404 when metrics are disabled.")}
paths["/openapi.json"] = {"get": op(
    "getOpenApi", "operations", "This OpenAPI document",
    resp({"200": {"description": "The OpenAPI 3.1 description of the API.",
                  "content": json_content({"type": "object"})}}, 404))}

UI_TYPES = {
    "text/html": {"schema": {"type": "string"}},
    "text/javascript": {"schema": {"type": "string"}},
    "text/css": {"schema": {"type": "string"}},
    "application/json": {"schema": {}},
    "image/svg+xml": {"schema": {"type": "string"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/x-icon": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}
paths["/"] = {"get": op(
    "getUi", "operations", "The web UI",
    resp({"200": {"description": "The page (text/html; charset=utf-8).",
                  "content": {"text/html": {"schema": {"type": "string"}}}}}, 404))}
paths["/ui/{file}"] = {"get": op(
    "getUiFile", "operations", "A file of the web UI",
    resp({"200": {"description": "The file; the Content-Type follows its extension "
                                 "(.html, .js, .css, .svg, .png, .ico, .json; else "
                                 "application/octet-stream).",
                  "content": UI_TYPES}}, 404),
    parameters=[path_param("file", "A flat file name: letters, digits, '.', '-', '_', not "
                                   "starting with '.'; anything else is a 404.",
                           {"type": "string", "minLength": 1, "maxLength": 128,
                            "examples": ["app.js", "style.css"]})])}

# ---- A1111 --------------------------------------------------------------------------------
A1111_GEN_CODES = (403, 404, 413, 415, 429, 503, 507)
paths["/sdapi/v1/txt2img"] = {"post": op(
    "a1111Txt2Img", "a1111", "Text to image (AUTOMATIC1111 API)",
    resp(ok_json(ref("A1111ImagesResponse")), *A1111_GEN_CODES),
    description="Body at most 1 MiB. 404 for an unknown override_settings.sd_model_checkpoint.",
    body={"required": True, "content": json_content(ref("A1111Txt2ImgRequest"))})}
paths["/sdapi/v1/img2img"] = {"post": op(
    "a1111Img2Img", "a1111", "Image to image (AUTOMATIC1111 API)",
    resp(ok_json(ref("A1111ImagesResponse")), *A1111_GEN_CODES),
    description="Body at most 24 MiB.",
    body={"required": True, "content": json_content(ref("A1111Img2ImgRequest"))})}
paths["/sdapi/v1/progress"] = {"get": op(
    "a1111Progress", "a1111", "Progress of the caller's oldest txt2img/img2img call",
    resp(ok_json(ref("A1111Progress"))),
    description="The caller is the tenant (bearer token). Any other query parameter is a 400.",
    parameters=[query_param("skip_current_image", "true: no preview image (case-insensitive "
                                                  "true/false).",
                            {"type": "boolean", "default": False})])}
EMPTY_OBJECT = {"type": "object", "maxProperties": 0}
paths["/sdapi/v1/interrupt"] = {"post": op(
    "a1111Interrupt", "a1111", "Stop the caller's oldest call",
    resp(ok_json(EMPTY_OBJECT, "Always `{}`."), 413),
    description="Its finished iterations are still returned. Any body is ignored.")}
paths["/sdapi/v1/skip"] = {"post": op(
    "a1111Skip", "a1111", "Skip the current iteration of the caller's oldest call",
    resp(ok_json(EMPTY_OBJECT, "Always `{}`."), 413),
    description="Any body is ignored.")}
paths["/sdapi/v1/options"] = {
    "get": op("a1111GetOptions", "a1111", "The A1111 options Kiln reports",
              resp(ok_json(ref("A1111Options")))),
    "post": op("a1111SetOptions", "a1111", "Change the default checkpoint",
               resp(ok_json({"const": True}, "Always `true`."), 404, 413, 415, 503),
               description="404 for a checkpoint not served here. Body at most 1 MiB.",
               body={"required": True, "content": json_content(ref("A1111OptionsUpdate"))}),
}
paths["/sdapi/v1/sd-models"] = {"get": op(
    "a1111SdModels", "a1111", "The loaded models as A1111 checkpoints",
    resp(ok_json({"type": "array", "items": ref("A1111SdModel")})))}
paths["/sdapi/v1/samplers"] = {"get": op(
    "a1111Samplers", "a1111", "The samplers Kiln runs, A1111 names",
    resp(ok_json({"type": "array", "items": ref("A1111Sampler")})))}
paths["/sdapi/v1/schedulers"] = {"get": op(
    "a1111Schedulers", "a1111", "The schedules Kiln runs",
    resp(ok_json({"type": "array", "items": ref("A1111Scheduler")})))}
paths["/sdapi/v1/upscalers"] = {"get": op(
    "a1111Upscalers", "a1111", "Upscalers: none",
    resp(ok_json({"type": "array", "maxItems": 0}, "Always `[]`.")))}
paths["/sdapi/v1/scripts"] = {"get": op(
    "a1111Scripts", "a1111", "Scripts: none",
    resp(ok_json(ref("A1111Scripts"), "Always `{\"txt2img\": [], \"img2img\": []}`.")))}

# ---- Jobs ---------------------------------------------------------------------------------
paths["/v1/jobs"] = {
    "post": op(
        "createJob", "jobs", "Create an async job",
        resp({"202": {"description": "Created: the job is durable.",
                      "headers": LOCATION,
                      "content": json_content(ref("Job")),
                      "links": JOB_LINKS},
              "200": {"description": "The job created earlier with this Idempotency-Key.",
                      "headers": dict(LOCATION, **{"Idempotent-Replayed": {
                          "schema": {"type": "string", "const": "true"}}}),
                      "content": json_content(ref("Job")),
                      "links": JOB_LINKS}},
             403, 404, 409, 413, 415, 429, 503, 507),
        description="The generations fields (plus an optional input image and webhook) as "
                    "JSON, or the edits form as multipart/form-data. Body at most 24 MiB. 409: "
                    "the Idempotency-Key was used with a different request.",
        parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                     "description": "The same key from the same tenant returns the earlier "
                                    "job instead of creating one.",
                     "schema": {"type": "string", "maxLength": 255,
                                "pattern": "^[!-~]*$"}}],
        body={"required": True, "content": {
            "application/json": {"schema": ref("JobRequest")},
            "multipart/form-data": {"schema": ref("JobForm"),
                                    "encoding": {"image": {"contentType":
                                                           "image/png, image/jpeg"},
                                                 "image[]": {"contentType":
                                                             "image/png, image/jpeg"}}}}}),
    "get": op(
        "listJobs", "jobs", "List jobs, newest first",
        resp(ok_json(ref("JobList")), 503),
        description="Any other query parameter is a 400.",
        parameters=[
            query_param("state", "Only jobs in this state.",
                        {"type": "string", "enum": JOB_STATES}),
            query_param("model", "Only jobs of this model.", {"type": "string",
                                                              "maxLength": 256}),
            query_param("batch_id", "Only the jobs of this batch.",
                        {"type": "string", "pattern": ULID}),
            query_param("limit", "Page size (default 20).",
                        {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}),
            query_param("after", "The next_cursor of the previous page.",
                        {"type": "string", "pattern": ULID}),
        ]),
}
paths["/v1/jobs/{id}"] = {
    "get": op("getJob", "jobs", "Get a job", resp(ok_json(ref("Job")), 404, 503),
              description="No query parameters (any is a 400).",
              parameters=[JOB_ID]),
    "delete": op(
        "cancelJob", "jobs", "Cancel a job",
        resp({"200": {"description": "Cancelled (it was queued).",
                      "content": json_content(ref("CancelledJob"))},
              "202": {"description": "Running: it stops at its next step; the final state "
                                     "arrives as an event.",
                      "content": json_content(ref("CancelledJob"))}},
             404, 405, 409, 503, 507),
        description="409 when the job has already ended.",
        parameters=[JOB_ID]),
}
paths["/v1/jobs/{id}/events"] = {"get": op(
    "getJobEvents", "jobs", "Follow a job (Server-Sent Events)",
    resp({"200": {"description": "An event stream: the current state first (event name = "
                                 "state, data = the job), then `running`, `progress` "
                                 "({id, step, num_steps[, preview]}) and a final `succeeded`, "
                                 "`failed` or `cancelled`; `: keep-alive` comments every 15 s; "
                                 "`end` when the server stops.",
                  "headers": {"Cache-Control": {"schema": {"type": "string"}}},
                  "content": {"text/event-stream": {"schema": ref("JobEvent")}}}},
         404, 429, 503),
    description="429 (with Retry-After) when too many streams are open.",
    parameters=[JOB_ID,
                query_param("previews", "1 or true: progress events carry a low-resolution "
                                        "preview.",
                            {"type": "string", "enum": ["0", "1", "true", "false"]})])}

# ---- Batches ------------------------------------------------------------------------------
JSONL_BODY = {"schema": {"type": "string",
                         "description": "JSONL: one BatchLine object "
                                        "(#/components/schemas/BatchLine) per line.",
                         "examples": ["{\"prompt\": \"a red square\", \"custom_id\": \"r1\"}\n"
                                      "{\"prompt\": \"a blue circle\"}\n"]}}
paths["/v1/batches"] = {"post": op(
    "createBatch", "batches", "Submit many generation jobs (JSONL)",
    resp({"202": {"description": "Queued, all lines in one transaction.",
                  "headers": LOCATION,
                  "content": json_content(ref("Batch")),
                  "links": BATCH_LINKS}},
         404, 409, 413, 415, 429, 503, 507),
    description="At most 10,000 lines and 16 MiB; one bad line is a 400 (`param`: "
                "\"line N: field\") and nothing is queued. No query parameters.",
    body={"required": True, "content": {
        "application/jsonl": JSONL_BODY,
        "application/x-ndjson": JSONL_BODY,
        "application/x-jsonlines": JSONL_BODY}})}
paths["/v1/batches/{id}"] = {"get": op(
    "getBatch", "batches", "Get a batch", resp(ok_json(ref("Batch")), 404, 503),
    parameters=[BATCH_ID])}
paths["/v1/batches/{id}/results"] = {"get": op(
    "getBatchResults", "batches", "A batch's results (JSONL)",
    resp({"200": {"description": "One BatchResultLine (#/components/schemas/BatchResultLine) "
                                 "per request, in submission order.",
                  "content": {"application/jsonl": {"schema": {"type": "string"}}}}},
         404, 503),
    parameters=[BATCH_ID])}

# ---- Files --------------------------------------------------------------------------------
paths["/v1/files/{key}"] = {"get": op(
    "getFile", "files", "A file of the result store",
    resp({"200": {"description": "The file.",
                  "headers": {"Cache-Control": {"schema": {"type": "string"}}},
                  "content": {
                      "image/png": {"schema": {"type": "string", "format": "binary"}},
                      "application/json": {"schema": {}},
                      "application/octet-stream": {"schema": {"type": "string",
                                                              "format": "binary"}}}}},
         403, 404, 503),
    description="Keys under jobs/ and images/ only. With API keys: the caller's key (another "
                "tenant's file is a 404), or a signed URL as Kiln hands them out (`expires` and "
                "`signature` together; a bad or expired one is a 403).",
    parameters=[query_param("expires", "Signed URLs: Unix seconds until which the grant holds.",
                            {"type": "string", "maxLength": 32}),
                query_param("signature", "Signed URLs: the grant's HMAC (hex).",
                            {"type": "string", "maxLength": 128}),
                path_param(
        "key",
        "The store key; it may contain slashes (the rest of the path), e.g. "
        "images/01M81N0P5C40CZMDPTEX41EQ5D/0.png, jobs/{id}/0.png, jobs/{id}/result.json. "
        "Keys with '.' or '..' segments, control characters or backslashes are a 400 (empty "
        "segments are collapsed); other prefixes and missing keys a 404.",
        {"type": "string", "minLength": 1, "maxLength": 512,
         "examples": ["images/01M81N0P5C40CZMDPTEX41EQ5D/0.png",
                      "jobs/01M81N0P5C40CZMDPTEX41EQ5D/result.json"]})])}

ORDER = ["/v1/images/generations", "/v1/images/edits", "/v1/models", "/v1/models/{id}",
         "/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/events", "/v1/batches",
         "/v1/batches/{id}", "/v1/batches/{id}/results", "/v1/files/{key}",
         "/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/progress",
         "/sdapi/v1/interrupt", "/sdapi/v1/skip", "/sdapi/v1/options", "/sdapi/v1/sd-models",
         "/sdapi/v1/samplers", "/sdapi/v1/schedulers", "/sdapi/v1/upscalers",
         "/sdapi/v1/scripts", "/healthz", "/readyz", "/v1/autoscale", "/metrics", "/",
         "/ui/{file}", "/openapi.json"]
assert set(ORDER) == set(paths), set(ORDER) ^ set(paths)

# ---- Who may call what (src/api/routes.cc: Guarded) ----------------------------------------
# With API keys (--api-keys), every route but these needs `Authorization: Bearer KEY` (401
# without); the operator and admin routes need an admin key (403 for a user key; the operator
# routes also answer a process on the server's own machine without a key).
PUBLIC = {("get", "/healthz"), ("get", "/readyz"), ("get", "/"), ("get", "/ui/{file}"),
          ("get", "/openapi.json")}
# A key, or a signed URL instead of one.
KEY_OR_SIGNED = {("get", "/v1/files/{key}")}
ADMIN = {("get", "/metrics"), ("get", "/v1/autoscale"), ("post", "/sdapi/v1/options")}
responses["Unauthorized"] = {
    "description": "No API key, or one this server does not know (only when it has keys).",
    "headers": {"WWW-Authenticate": {"description": "`Bearer`.", "schema": {"type": "string"}}},
    "content": ERR}
for path, item in paths.items():
    for method, o in item.items():
        if (method, path) in PUBLIC:
            o["security"] = []
            continue
        o["security"] = [{"bearer": []}, {}] if (method, path) in KEY_OR_SIGNED else \
            [{"bearer": []}]
        o["responses"]["401"] = rref("Unauthorized")
        o["responses"]["429"] = rref("TooManyRequests")  # a key's requests_per_minute
        if (method, path) in ADMIN:
            o["responses"]["403"] = rref("Forbidden")
        o["responses"] = dict(sorted(o["responses"].items()))

doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "Kiln",
        "version": "0.9.0",
        "description": "Kiln's HTTP API: OpenAI-compatible image generation, async jobs and "
                       "batches, the AUTOMATIC1111 /sdapi/v1 API, and operations endpoints. "
                       "Field-by-field reference: docs/api.md. Every error has the shape of "
                       "components/schemas/Error.",
    },
    "servers": [{"url": "/"}],
    "tags": [
        {"name": "openai", "description": "OpenAI images API (sync)."},
        {"name": "jobs", "description": "Durable async jobs."},
        {"name": "batches", "description": "Many jobs in one JSONL body."},
        {"name": "files", "description": "The result store."},
        {"name": "models", "description": "The loaded models."},
        {"name": "a1111", "description": "AUTOMATIC1111's /sdapi/v1."},
        {"name": "operations", "description": "Health, readiness, autoscaling, metrics, UI."},
    ],
    "paths": {p: paths[p] for p in ORDER},
    "components": {"schemas": schemas, "responses": responses,
                   "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                  "description": "An API key from --api-keys "
                                                                 "(docs/operations.md, Security)."}}},
}

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "web", "openapi.json")
text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
if "--check" in sys.argv[1:]:
    with open(OUT, encoding="utf-8") as f:
        if f.read() != text:
            print("web/openapi.json is stale: run python3 tools/openapi/make_openapi.py")
            sys.exit(1)
    print("web/openapi.json is up to date")
else:
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote", os.path.normpath(OUT))
