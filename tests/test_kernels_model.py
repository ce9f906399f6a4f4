"""The whole Video DiT on backend "triton" (on the interpreter without a GPU) against backend "torch": one
forward and backward of a tiny config in fp32, the output and every parameter gradient."""

import torch

from replicate.config import ClipConfig, ModelConfig
from replicate.data import make_clips
from replicate.model import VideoDiT

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# 2 x 2 x 2 = 8 tokens of 48 values; head dim 16; depth 2 runs the cross-block residual fusion and the final one
TINY = ModelConfig(
    width=32, depth=2, heads=2, clip=ClipConfig(frames=4, height=8, width=8, channels=3), patch=(2, 4, 4)
)


def _step(backend: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = VideoDiT(TINY, backend=backend).to(DEVICE)
    for p in model.parameters():  # off adaLN-Zero's zeros, so that every path carries signal
        torch.nn.init.normal_(p, std=0.1)
    x, y = make_clips(TINY.clip, 0, "train", torch.arange(3))
    out = model(x.to(DEVICE), torch.tensor([0, 500, 999], device=DEVICE), y.to(DEVICE))
    out.pow(2).mean().backward()
    return {"out": out.detach(), **{name: p.grad for name, p in model.named_parameters()}}


def test_triton_model_matches_torch_and_is_deterministic():
    want, got = _step("torch"), _step("triton")
    assert want.keys() == got.keys()
    for name in want:
        assert got[name].abs().max() > 0, name
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)
    again = _step("triton")
    assert all(torch.equal(got[name], again[name]) for name in got)
