import numpy as np
import pytest
import torch

from replicate.config import NUM_CLASSES, ClipConfig
from replicate.training.data import ClipStream, clip_uniforms, frame_strip, make_clips, save_gif


def test_shape_range_and_labels():
    cfg = ClipConfig(frames=6, height=12, width=20, channels=2)
    x, y = make_clips(cfg, seed=0, split="train", index=torch.arange(32))
    assert x.shape == (32, 2, 6, 12, 20) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.2
    assert y.shape == (32,) and 0 <= y.min() and y.max() < NUM_CLASSES


def test_clip_is_a_pure_function_of_seed_split_index():
    cfg = ClipConfig()
    a, la = make_clips(cfg, 5, "train", torch.tensor([7, 3, 1000]))
    b, lb = make_clips(cfg, 5, "train", torch.tensor([1000, 7]))
    assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0]) and la[2] == lb[0]
    c, _ = make_clips(cfg, 6, "train", torch.tensor([7]))
    d, _ = make_clips(cfg, 5, "val", torch.tensor([7]))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], d[0])


def test_stream_matches_direct_rendering_across_blocks():
    cfg = ClipConfig()
    stream = ClipStream(cfg, seed=1, block=64)
    got = torch.cat([stream.next(b)[0] for b in (10, 50, 100, 7)])
    want, _ = make_clips(cfg, 1, "train", torch.arange(167))
    assert torch.equal(got, want)
    resumed = ClipStream(cfg, seed=1, start=60).next(5)[0]
    assert torch.equal(resumed, want[60:65])


def test_splits_are_disjoint_and_clips_do_not_repeat():
    cfg = ClipConfig(frames=2, height=8, width=8)
    train, _ = make_clips(cfg, 0, "train", torch.arange(20000))
    val, _ = make_clips(cfg, 0, "val", torch.arange(4000))
    keys = [hash(row.numpy().tobytes()) for row in torch.cat([train, val]).flatten(1)]
    assert len(set(keys)) == len(keys)


def test_uniforms_look_uniform_and_independent():
    u = clip_uniforms(3, "train", torch.arange(4096), 8)
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01
    corr = np.corrcoef(u.T.numpy())
    assert np.abs(corr - np.eye(8)).max() < 0.06


def test_all_shapes_and_motions_occur():
    _, y = make_clips(ClipConfig(), 0, "train", torch.arange(2000))
    counts = torch.bincount(y, minlength=NUM_CLASSES)
    assert counts.min() > 2000 / NUM_CLASSES / 2


def test_bad_input():
    with pytest.raises(ValueError, match="split"):
        make_clips(ClipConfig(), 0, "holdout", torch.arange(2))
    with pytest.raises(ValueError, match="frames"):
        ClipConfig(frames=0)


def test_strip_and_gif(tmp_path):
    x, _ = make_clips(ClipConfig(), 0, "train", torch.arange(1))
    strip = frame_strip(x[0])
    assert strip.shape == (16, 8 * 17 - 1, 3) and strip.dtype == np.uint8
    path = save_gif(x[0], tmp_path / "clip.gif")
    assert path.stat().st_size > 100
