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
# # The model and its kernels
#
# A Video DiT in the style of DiT {cite}`peebles2023scalable` (`replicate.training.model.VideoDiT`): clips are cut into
# 3D patches of $1 \times 4 \times 4$ pixels, embedded linearly, given a fixed 3D sin-cos
# position, and processed by blocks of full 3D self-attention and a tanh-GELU MLP, each conditioned on the
# timestep and the class label by adaLN-Zero (a LayerNorm without affine whose shift, scale and residual
# gate are regressed from the conditioning, all initialised to zero so the network starts as the identity
# and outputs zeros). A final adaLN layer maps tokens back to patches. The DiT's hot ops (LayerNorm-modulate,
# attention, the MLP's first layer with its GELU) are Triton kernels (`replicate.kernels`), with the PyTorch
# references as the CPU path and the test oracle. Attention has two: for the study's short clips (at most 64
# tokens) one program holds a whole (clip, head), its scores included, forward and backward
# (`kernels.clip_attention`); longer sequences take a flash-attention kernel {cite}`dao2022flashattention` that tiles them
# (`kernels.flash_attention`). Backend `auto` uses a Triton kernel only where the benchmark below measured it
# faster than PyTorch on a GPU (`kernels.TRITON_FASTER`).

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"

# %% tags=["hide-input"]
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # the Triton kernels run on the CPU interpreter here

from IPython.display import Markdown, display

from replicate import kernels, report
from replicate.kernels.bench import accuracy_rows
from replicate.report import figures

# %% [markdown]
# ## Sizes and their parameter and FLOP counts
#
# $N$ (`replicate.config.count_params`) counts each block's per-token matmul weights and biases (attention
# and MLP, $12d^2 + 9d$ per block): the parameters whose compute grows with every token. Embeddings, the
# final layer and the adaLN modulations act once per patch or once per clip and are excluded, as an LLM's
# embeddings are. Training FLOPs per token (`replicate.config.flops_per_token`) in three conventions:
# $6N$; the paper's $C_\mathrm{token} = \tfrac34 N (7 + n_\mathrm{ctx}/d)$, exact for its cross-attention DiT;
# and the exact matmul count of our model (attention scores included, $\times 3$ for training), checked
# against `torch.utils.flop_counter` in the tests.

# %% tags=["hide-input"]
profile = report.study_profile(RESULTS_DIR)
if profile is not None:
    display(Markdown(report.clip_sentence(profile) + " Its models:"))
    sizes = report.study_models(profile)
else:  # no study rendered: the named ladder of config.MODEL_SIZES at the default clip
    display(Markdown(f"No study in `{RESULTS_DIR}`: the named sizes of `replicate.config.MODEL_SIZES` instead."))
    sizes = report.named_sizes()
display(report.table(sizes))

# %% tags=["hide-input"]
figures.show(figures.flop_conventions_figure(sizes), "02_flop_conventions")
display(Markdown(report.flop_overhead_sentence(sizes)))

# %% [markdown]
# What to see: the attention scores ($4 n_\mathrm{ctx} d$ per layer and token) matter most for the narrowest
# models, and the exact count approaches $6N$ as the models widen; the paper's formula lies between the two for
# the narrowest models and below $6N$ for the wider ones (the sentence above gives its range). A compute-optimal law
# fitted with one convention has a different exponent than with another (Porian et al.
# {cite}`porian2024resolving` found 0.05-0.1 from such choices), so {doc}`07_loss_law` reports all three.
#
# ## Kernel correctness
#
# Each op of the catalog (`replicate.kernels.OPS`: every op the model calls) on Triton against its
# formulation written out in float64, output and every gradient, at small odd shapes (2 clips of 17 tokens,
# width 48, 3 heads), here in float32 on the CPU interpreter. The test suite covers more shapes and float16; on
# a GPU the same suite runs the compiled kernels.

# %% tags=["hide-input"]
display(report.error_table(accuracy_rows()))

# %% [markdown]
# ## Kernel speed
#
# `benchmarks/kernels.py` (and the device run, `make device`) times each op forward and backward against
# PyTorch eager and `torch.compile`, and the whole training step with PyTorch's ops and with the Triton kernels.
# The table is the newest GPU measurement committed: the baseline's milliseconds (eager PyTorch; for the captured
# step, the step with PyTorch's ops), the speed-up over it of `torch.compile` and of the Triton kernels (x,
# above 1: faster), and the kernels' speed-up over the faster of eager and compile (`triton x best`). Its
# shapes, and where they come from, follow the table.

# %% tags=["hide-input"]
speed = report.load_kernel_benchmark()
if speed is not None:
    for rows in report.kernel_benchmarks_by_device(speed):
        display(report.table(report.kernel_speed_table(rows), digits=3))
        display(Markdown(report.kernel_speed_sentence(rows, kernels.TRITON_FASTER)))
        display(Markdown(report.kernel_shapes_sentence(rows, sizes)))
else:
    display(Markdown("**Not measured yet.** Run `python benchmarks/kernels.py` on a GPU to fill this table."))

# %% tags=["hide-input"]
display(Markdown(report.paper_box(report.dit_scale_lines(sizes))))
