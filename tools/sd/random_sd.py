"""Random-weight Stable Diffusion models made with diffusers, for benchmarks and tests.

`make_model(kind, folder, dtype)` writes a diffusers folder whose architecture is the published
one (SD 1.5: runwayml/stable-diffusion-v1-5's configs; SDXL: stabilityai/stable-diffusion-xl-base-1.0's)
or a tiny one, with random weights: the numbers are noise, the shapes and the work per step are
the real models'. Nothing is downloaded; the CLIP vocabulary is a byte-level one written here
(`write_byte_vocab`), which tokenizes any text (the real vocabulary is not needed to time a model).

usage: random_sd.py sd15|sdxl|tiny|tiny-v FOLDER [--dtype float16|float32|bfloat16]
"""

import argparse
import json
import os

import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from make_test_models import bytes_to_unicode  # noqa: E402  (CLIP's byte table)

# The published architectures (the values in the models' config.json files).
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 cross_attention_dim=768, attention_head_dim=8)
SD15_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, hidden_act="quick_gelu")
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                 cross_attention_dim=2048, use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
SDXL_TEXT_2 = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                   num_attention_heads=20, hidden_act="gelu", projection_dim=1280)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
           layers_per_block=2)
TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                 block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                 attention_head_dim=4, norm_num_groups=32)
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 hidden_act="quick_gelu")
TINY_VAE = dict(VAE, block_out_channels=(32, 32, 32, 32), layers_per_block=1, norm_num_groups=32)
# SD 2.x's distinguishing traits at tiny widths: linear projections, a head count per block,
# exact-gelu text encoder, v-prediction.
TINY_V_UNET = dict(TINY_UNET, use_linear_projection=True, attention_head_dim=(2, 4))
TINY_V_TEXT = dict(TINY_TEXT, hidden_act="gelu")


def write_byte_vocab(folder, pad="<|endoftext|>"):
    """A CLIP byte-level BPE vocabulary: every byte alone and word-final, a few merges, the two
    special tokens last (so the end token has the largest id, as in CLIP's). Returns the
    transformers tokenizer and the vocabulary size."""
    from transformers import CLIPTokenizer
    units = list(bytes_to_unicode().values())
    vocab = units + [u + "</w>" for u in units]
    merges = [("c", "a"), ("ca", "t</w>"), ("r", "e"), ("re", "d</w>")]
    vocab += [a + b for a, b in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"),
                              pad_token=pad, model_max_length=77)
    return tokenizer, len(vocab)


def text_encoder(cls_name, vocab_size, **kw):
    import transformers
    config = transformers.CLIPTextConfig(vocab_size=vocab_size, max_position_embeddings=77,
                                         bos_token_id=vocab_size - 2, eos_token_id=2,
                                         pad_token_id=vocab_size - 1, **kw)
    return getattr(transformers, cls_name)(config)


def make_pipeline(kind, work):
    """The pipeline object (random weights) for `kind`; `work` holds the tokenizer files."""
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline,
                           StableDiffusionXLPipeline, UNet2DConditionModel)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading",
        prediction_type="v_prediction" if kind == "tiny-v" else "epsilon")
    tokenizer, vocab = write_byte_vocab(os.path.join(work, "tok"))
    if kind == "sdxl":
        _, vocab2 = write_byte_vocab(os.path.join(work, "tok2"), pad="!")
        from transformers import CLIPTokenizer
        tokenizer_2 = CLIPTokenizer(os.path.join(work, "tok2", "vocab.json"),
                                    os.path.join(work, "tok2", "merges.txt"), pad_token="!",
                                    model_max_length=77)
        return StableDiffusionXLPipeline(
            vae=AutoencoderKL(**VAE, scaling_factor=0.13025, force_upcast=True),
            text_encoder=text_encoder("CLIPTextModel", vocab, **SD15_TEXT),
            text_encoder_2=text_encoder("CLIPTextModelWithProjection", vocab2, **SDXL_TEXT_2),
            tokenizer=tokenizer, tokenizer_2=tokenizer_2,
            unet=UNet2DConditionModel(**SDXL_UNET), scheduler=scheduler)
    unet, text, vae = {"sd15": (SD15_UNET, SD15_TEXT, VAE),
                       "tiny": (TINY_UNET, TINY_TEXT, TINY_VAE),
                       "tiny-v": (TINY_V_UNET, TINY_V_TEXT, TINY_VAE)}[kind]
    return StableDiffusionPipeline(
        vae=AutoencoderKL(**vae, scaling_factor=0.18215),
        text_encoder=text_encoder("CLIPTextModel", vocab, **text), tokenizer=tokenizer,
        unet=UNet2DConditionModel(**unet), scheduler=scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)


def make_model(kind, folder, dtype="float16"):
    import tempfile
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as work:
        pipe = make_pipeline(kind, work)
        pipe.to(getattr(torch, dtype))
        pipe.save_pretrained(folder)
    return folder


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["sd15", "sdxl", "tiny", "tiny-v"])
    ap.add_argument("folder")
    ap.add_argument("--dtype", default="float16", choices=["float16", "float32", "bfloat16"])
    args = ap.parse_args()
    make_model(args.kind, args.folder, args.dtype)
    print(f"wrote {args.kind} ({args.dtype}) to {args.folder}")


if __name__ == "__main__":
    main()
