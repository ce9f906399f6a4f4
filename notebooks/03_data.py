# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The data
#
# The paper trains on Panda-70M video through a VAE; we cannot, so the study runs on a procedural stream
# (`replicate.training.data`): grayscale clips in which a textured *main* sprite (a
# square, disc, triangle or ring) moves in a straight line, bounces off the walls or orbits, over a distractor
# sprite and a drifting background wave. The main sprite's (shape, motion) is the class label, 12 classes.
#
# Clip $i$ of split $s$ under seed $k$ is a pure function of $(k, s, i)$: every random parameter is a
# counter-based hash of the three, so the stream is unlimited, never repeats, needs no storage, renders on
# the training device and keeps training and validation clips apart. Rendering is vectorised: two layers of
# "over" compositing are linear in the colours, so a clip is one batched matmul of six single-channel images.

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"

# %% tags=["hide-input"]
from pathlib import Path

import torch
from IPython.display import Markdown, display

from replicate import report
from replicate.config import NUM_CLASSES, ClipConfig, label_name
from replicate.report import figures
from replicate.training.data import frame_strip, make_clips, save_gif
from replicate.training.diffusion import ddim_sample
from replicate.training.train import load_model

# %% [markdown]
# ## Training clips
#
# Eight clips of the training stream of the study rendered here, frames left to right; the title is the class
# label, the main sprite's shape and motion. Two sprites move in every clip: the main one is always drawn in
# front, and the other, the distractor, has a random shape and motion of its own and can pass behind it; size,
# texture and colour tell them apart only by chance, so the model must learn which one the label describes. What
# to see: the variety of textures, sizes and contrasts, and the three motions.

# %% tags=["hide-input"]
profile = report.study_profile(RESULTS_DIR)
clip = profile.runs[0].cfg.model.clip if profile is not None else ClipConfig()
if profile is not None:
    display(Markdown(report.clip_sentence(profile)))
index = torch.arange(8)
videos, labels = make_clips(clip, seed=0, split="train", index=index)
source = {"seed": 0, "split": "train", "index": index.tolist()}
figures.show(figures.clip_strips(videos, labels, label_name, frame_strip, source=source), "03_training_clips")

# %% tags=["hide-input"]
Path("book/figures").mkdir(parents=True, exist_ok=True)
for i in range(3):
    save_gif(videos[i], f"book/figures/clip{i}.gif", scale=8)
display(
    Markdown(
        " ".join(f"![clip {i}](figures/clip{i}.gif)" for i in range(3))
        + "\n\nThree of the clips above, animated (8x enlarged)."
    )
)

# %% [markdown]
# ## How fast the stream is
#
# Data must never slow training down. `benchmarks/train_throughput.py` measures training tokens per second
# (batches of 64 clips of 128 tokens) and how many times faster the generator, run on the same device,
# produces tokens than training consumes them: below on 2 CPU cores (fp32) and on an H100 (bf16 autocast).

# %% tags=["hide-input"]
throughput = report.throughput_table()
if throughput is not None:
    display(report.table(throughput))
else:
    display(
        Markdown(
            "*Not measured yet: run `python benchmarks/train_throughput.py --out "
            "results/benchmarks/train_throughput.jsonl`.*"
        )
    )

# %% [markdown]
# ## Samples from a trained model
#
# The largest model trained here (the cpu study's held-out size, trained once more, for longer, with
# `python -m replicate train --width 128 --depth 6 --heads 8 --batch-clips 8 --lr 1e-3 --tokens 2000000
# --frames 4 --val-examples 512 --save-model results/samples/model.pt --out results/samples/model.json`; DDPM
# objective {cite}`ho2020denoising`), sampled from its power-EMA
# weights {cite}`karras2024analyzing` with 50 DDIM steps and
# classifier-free guidance 2 (`replicate.training.diffusion.ddim_sample`), one clip for each of the 12 classes. What to
# see: whether the shapes, textures and motions of the training clips above come back.

# %% tags=["hide-input"]
weights = Path("results/samples/model.pt")
if weights.is_file():
    model = load_model(weights)
    y = torch.arange(NUM_CLASSES)
    samples = ddim_sample(
        model, y, model.cfg.clip.shape, steps=50, guidance=2.0, generator=torch.Generator().manual_seed(0)
    )
    source = {"sampler": "ddim_sample, 50 steps, guidance 2", "generator_seed": 0}
    fig = figures.clip_strips(samples, y, label_name, frame_strip, columns=2, source=source)
    figures.show(fig, "03_samples")
    sampled = report.sampled_model_sentence(weights)
    if sampled:
        display(Markdown(sampled))
else:
    display(Markdown("*No trained model in `results/samples/` yet.*"))

# %% [markdown]
# **What the samples show**: the clips' overall brightness and some of their smooth backgrounds come back,
# with the 4 x 4-pixel patch grid still visible, but not the sprites: no recognisable square, disc, triangle or
# ring, and no consistent motion across the four frames. The models of this study, the largest included, have
# learned the coarse statistics of the clips, not their objects. That is the regime every law in this book is
# measured in, whereas the paper's models generate recognisable video. Exponents measured this early in
# learning need not hold later: the laws here describe how quickly the coarse structure is learned, and
# carrying them to the paper's regime is an extrapolation in quality as well as in scale.

# %% tags=["hide-input"]
display(
    Markdown(
        report.paper_box(
            [
                "The paper's data are real videos (Panda-70M, 17 frames at 256 x 256) encoded by a VAE into latents; "
                "ours are procedural grayscale pixels. Our clips are far simpler, so absolute losses are not comparable.",
                "What carries over is the structure of the problem: denoising a spatio-temporal signal with full 3D "
                "attention, conditioned on a label, with unlimited non-repeating data (no epochs, as in the paper's "
                "single pass over 70M clips).",
            ]
        )
    )
)
