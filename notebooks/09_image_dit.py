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
# # Appendix: an image DiT
#
# The paper's appendix reports that the same law form holds for an image DiT (1-frame video). We run the
# same pipeline on 1-frame clips of 32 x 32 pixels (64 tokens each with 1 x 4 x 4 patches): the same model
# code, sweep engine and fits, profile `image` (its design is printed below).

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"

# %% tags=["hide-input"]
import tomllib

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from replicate import plots, report
from replicate.config import MOTIONS, SHAPES, ClipConfig
from replicate.data import frame_strip, make_clips

image = report.open_study(IMAGE_DIR, PROFILE)

# %% tags=["hide-input"]
videos, labels = make_clips(ClipConfig(frames=1, height=32, width=32), seed=0, split="train", index=torch.arange(8))
strip = torch.cat(list(videos), dim=1)  # the 8 images side by side, as the frames of one strip
fig, ax = plt.subplots(figsize=(9, 1.6))
ax.imshow(frame_strip(strip))
ax.set_axis_off()
ax.set_title("Eight training images: " + "; ".join(SHAPES[int(y) // len(MOTIONS)] for y in labels), fontsize=8)
plt.show()

# %% [markdown]
# ## The sweep and the laws on images

# %% tags=["hide-input"]
if image is not None and image.fit is not None:
    display(report.table(report.grid_table(image.runs)))
    table = report.comparison(image.fit)
    display(report.table(table))

# %% tags=["hide-input"]
if image is not None and image.fit is not None:
    fig = plots.loss_law_figure(image.fit)
    plt.show()
    fig = plots.hyperparameter_law_figure(image.fit, "batch_size")
    plt.show()

# %% tags=["hide-input"]
if image is not None and image.fit is not None:
    video = report.load_study(RESULTS_DIR)
    lines = [
        f"The loss law on images: alpha_T = {image.fit['loss_law']['alpha_tokens']:.3f}, "
        f"alpha_N = {image.fit['loss_law']['alpha_params']:.3f}, converged: {image.fit['loss_law']['converged']}."
    ]
    if video is not None and video.fit is not None:
        lines.append(
            f"On video (same code, this book's main study): alpha_T = "
            f"{video.fit['loss_law']['alpha_tokens']:.3f}, alpha_N = {video.fit['loss_law']['alpha_params']:.3f}."
        )
    lines.append(
        "The paper reports only that the same form fits its image DiT; compare the form and the signs "
        "of the hyperparameter exponents, not values."
    )
    design = tomllib.loads(image.profile).get("design", "")
    lines.append("How the grid was chosen: " + " ".join(design.split()))
    display(Markdown(report.paper_box(lines)))
