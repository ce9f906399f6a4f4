"""replicate: a re-executable replication of *Towards Precise Scaling Laws for Video Diffusion Transformers*
(Yin et al., CVPR 2025).

Modules: data (procedural clips), model (Video DiT, parameter and FLOP counts), kernels (the block's ops,
PyTorch and Triton), diffusion (DDPM loss, validation loss, DDIM), train (one run), cli.
"""

__version__ = "0.1.0"
