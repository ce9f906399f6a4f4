"""The closed forms of the SGD derivation (McCandlish et al. 2018; the book's chapter 4), torch-free: the
measurements (replicate.theory.noise) and the book's tables use the same functions.
"""

from __future__ import annotations


def eta_opt(batch_size: float, eta_max: float, b_noise: float) -> float:
    """The SGD step size that most lowers the loss at batch size B: eta_max / (1 + B_noise / B) (Step 4)."""
    return eta_max / (1 + b_noise / batch_size)


def steps_examples_tradeoff(batch_size: float, b_noise: float) -> tuple[float, float]:
    """(S / S_min, E / E_min) at batch size B: the steps and examples needed for a given loss relative to
    their minima, on the hyperbola (S / S_min - 1)(E / E_min - 1) = 1 with B_crit = B_noise (Step 5)."""
    return 1 + b_noise / batch_size, 1 + batch_size / b_noise
