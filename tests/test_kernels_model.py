"""The whole Video DiT on backend "triton" (on the interpreter without a GPU) against backend "torch": one
forward and backward of a tiny config in fp32, the output and every parameter gradient."""

import pytest
import torch

from replicate.config import ClipConfig, ModelConfig
from replicate.training.data import make_clips
from replicate.training.ensemble import stack
from replicate.training.model import VideoDiT

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# 2 x 2 x 2 = 8 tokens of 48 values; head dim 16; depth 2: a block's output feeds another block and the final layer
TINY = ModelConfig(
    width=32, depth=2, heads=2, clip=ClipConfig(frames=4, height=8, width=8, channels=3), patch=(2, 4, 4)
)


def _model(backend: str, seed: int = 0) -> VideoDiT:
    torch.manual_seed(seed)
    model = VideoDiT(TINY, backend=backend).to(DEVICE)
    for p in model.parameters():  # off adaLN-Zero's zeros, so that every path carries signal
        torch.nn.init.normal_(p, std=0.1)
    return model


def _step(backend: str, members: int = 1) -> dict[str, torch.Tensor]:
    """One forward and backward; with `members` > 1 of an ensemble of that many different models (stacked
    layers: the fused fc1 + GELU kernel then multiplies each member's rows by its own weights)."""
    model = _model(backend) if members == 1 else stack([_model(backend, seed) for seed in range(members)])
    x, y = make_clips(TINY.clip, 0, "train", torch.arange(3 * members))
    t = torch.tensor([0, 500, 999] * members, device=DEVICE)
    out = model(x.to(DEVICE), t, y.to(DEVICE))
    out.pow(2).mean().backward()
    return {"out": out.detach(), **{name: p.grad for name, p in model.named_parameters()}}


@pytest.mark.parametrize("members", [1, 2])
def test_triton_model_matches_torch_and_is_deterministic(members):
    want, got = _step("torch", members), _step("triton", members)
    assert want.keys() == got.keys()
    for name in want:
        assert got[name].abs().max() > 0, name
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)
    again = _step("triton", members)
    assert all(torch.equal(got[name], again[name]) for name in got)
