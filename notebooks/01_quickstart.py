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
# # Quick start: a tiny Video DiT on procedural clips
#
# The data are procedural grayscale clips (8 frames of 16 x 16 pixels): a textured *main* sprite, whose shape
# and motion form the class label, over a distractor sprite and a drifting background. The model is a
# DiT-style Video DiT with 3D patches of 1 x 4 x 4 pixels (128 tokens per clip), trained with the DDPM
# epsilon-prediction loss at a constant learning rate and validated on a fixed held-out set.

# %% tags=["parameters"]
PROFILE = "default"
TOKENS = 600_000  # training tokens of the demonstration run

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from replicate.data import MOTIONS, SHAPES, ClipConfig, frame_strip, make_clips
from replicate.model import count_params, model_config
from replicate.train import TrainConfig, train

torch.set_num_threads(2)
sns.set_theme(style="whitegrid")

# %% [markdown]
# ## The clips
#
# Each row is one clip, frames left to right; its title is the class label (main sprite's shape and motion).

# %%
videos, labels = make_clips(ClipConfig(), seed=0, split="train", index=torch.arange(6))
fig, axes = plt.subplots(6, 1, figsize=(9, 7))
for ax, video, label in zip(axes, videos, labels, strict=True):
    ax.imshow(frame_strip(video))
    ax.set_title(f"{SHAPES[label // len(MOTIONS)]}, {MOTIONS[label % len(MOTIONS)]}", fontsize=9)
    ax.set_axis_off()
fig.suptitle("Six training clips: 8 frames each, left to right")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## A tiny model's validation loss
#
# One run of the smallest model size; the validation loss (a fixed set of 1024 held-out clips with fixed
# noise and stratified timesteps) is measured at checkpoints about $\sqrt 2$ apart in training tokens.

# %%
cfg = TrainConfig(model_config("nano"), batch_size=16, lr=3e-3, tokens=TOKENS, val_examples=1024)
record = train(cfg)
curve = pd.DataFrame([vars(c) for c in record.checkpoints])
print(f"N = {count_params(cfg.model):,} non-embedding parameters, {cfg.model.n_ctx} tokens per clip")
curve[["tokens", "val_loss", "val_loss_se", "train_loss"]]

# %%
fig, ax = plt.subplots(figsize=(6, 4))
ax.errorbar(curve.tokens, curve.val_loss, yerr=curve.val_loss_se, marker="o", label="validation")
ax.plot(curve.tokens, curve.train_loss, marker=".", ls="--", label="training (mean since last checkpoint)")
ax.set(xscale="log", yscale="log", xlabel="training tokens T", ylabel="eps-prediction MSE")
ax.legend()
ax.set_title("The loss falls as a power of T (nearly straight on log-log axes)")
plt.show()
