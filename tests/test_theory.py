import numpy as np
import pytest
import torch

from replicate.theory.noise import QuadraticProblem, hvp, measure
from replicate.theory.sgd import eta_opt, steps_examples_tradeoff

FIELDS = ("grad_norm2", "trace_sigma", "gHg", "trace_h_sigma", "b_simple", "b_noise", "eta_max")


@pytest.mark.parametrize("dim, condition", [(8, 10.0), (40, 1000.0)])
def test_estimates_match_the_closed_form(dim, condition):
    qp = QuadraticProblem(dim, condition=condition, noise=4.0, seed=dim)
    ns = measure(qp.loss_fn, qp.params, qp.sample_batch, batch_sizes=(2, 64), n_draws=600, seed=0)
    truth = qp.closed_form()
    for name in FIELDS:
        est = getattr(ns, name)
        assert abs(est.value - truth[name]) < 4 * est.se, (name, est, truth[name])
        assert abs(est.value - truth[name]) < 0.1 * truth[name], (name, est, truth[name])


def test_standard_errors_are_honest():
    """Over independent replicates the z-scores (estimate - truth) / SE look standard normal."""
    qp = QuadraticProblem(12, condition=30.0, noise=4.0, seed=3)
    truth = qp.closed_form()
    z = {name: [] for name in FIELDS}
    for rep in range(24):
        ns = measure(qp.loss_fn, qp.params, qp.sample_batch, batch_sizes=(2, 32), n_draws=60, seed=rep)
        for name in FIELDS:
            z[name].append((getattr(ns, name).value - truth[name]) / getattr(ns, name).se)
    for name in FIELDS:
        scores = np.array(z[name])
        assert np.mean(np.abs(scores) < 3) >= 0.9, (name, scores)
        assert 0.6 < scores.std() < 1.6, (name, scores.std())


def test_hvp_methods_agree_with_the_true_hessian():
    qp = QuadraticProblem(6, seed=0)
    v = torch.randn(6, dtype=torch.float64)
    batch = qp.sample_batch(4)
    exact = qp.h @ v
    for method in ("double_backward", "finite_difference"):
        torch.testing.assert_close(hvp(qp.loss_fn, qp.params, batch, v, method), exact, rtol=1e-6, atol=1e-8)
    before = qp.theta.detach().clone()
    hvp(qp.loss_fn, qp.params, batch, v, "finite_difference")
    assert torch.equal(qp.theta.detach(), before)


def test_eta_opt_and_tradeoff():
    qp = QuadraticProblem(5, seed=1)
    ns = measure(qp.loss_fn, qp.params, qp.sample_batch, batch_sizes=(2, 16), n_draws=20)
    b = ns.b_noise.value
    assert eta_opt(b, ns.eta_max.value, ns.b_noise.value) == pytest.approx(ns.eta_max.value / 2)
    assert eta_opt(1e9, ns.eta_max.value, ns.b_noise.value) == pytest.approx(ns.eta_max.value, rel=1e-6)
    s, e = steps_examples_tradeoff(4.0, 8.0)
    assert (s - 1) * (e - 1) == pytest.approx(1.0) and s == 3.0


def test_bad_arguments():
    qp = QuadraticProblem(3)
    with pytest.raises(ValueError, match="batch_sizes"):
        measure(qp.loss_fn, qp.params, qp.sample_batch, batch_sizes=(8, 8))
    with pytest.raises(ValueError, match="HVP"):
        hvp(qp.loss_fn, qp.params, qp.sample_batch(2), torch.zeros(3, dtype=torch.float64), "magic")


def test_a_tiny_dit_measurement_is_sane():
    from replicate.config import ClipConfig, ModelConfig
    from replicate.theory.noise import best_step, diffusion_objective, sgd_step_gain
    from replicate.training.model import VideoDiT

    torch.manual_seed(0)
    model = VideoDiT(ModelConfig(width=32, depth=1, heads=2, clip=ClipConfig(frames=2, height=8, width=8)))
    for p in model.parameters():  # away from adaLN-Zero's exact zeros, where gradients vanish
        torch.nn.init.normal_(p, std=0.02)
    loss_fn, params, sample = diffusion_objective(model, seed=0)
    before = [p.detach().clone() for p in params]
    ns = measure(loss_fn, params, sample, batch_sizes=(2, 16), n_draws=6, n_bootstrap=200)
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, params, strict=True))
    for name in FIELDS:
        est = getattr(ns, name)
        assert np.isfinite(est.value) and np.isfinite(est.se) and est.se >= 0, name
    assert ns.grad_norm2.value > 0 and ns.gHg.value > 0 and ns.eta_max.value > 0
    fd = measure(
        loss_fn, params, sample, batch_sizes=(2, 16), n_draws=6, hvp_method="finite_difference", n_bootstrap=200
    )
    assert fd.gHg.value > 0
    etas = np.logspace(-3, 1, 9)
    change = sgd_step_gain(loss_fn, params, sample, sample(32), 8, etas, n_draws=2)
    assert change.shape == (9,) and change[0] < 0 < change[-1]  # small steps help, huge ones hurt
    assert etas[0] <= best_step(etas, change) <= etas[-1]
