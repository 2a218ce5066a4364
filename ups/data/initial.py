"""PDEBench's random initial-condition family for 1D Burgers (``init_multi``, k_tot=4).

A faithful NumPy re-implementation of ``pdebench/data_gen/data_gen_NLE/utils.py::init_multi``
(called there with ``k_tot=4, num_choise_k=2, if_norm=False``):

1. pick ``num_choice_k`` wavenumber slots out of ``1..k_tot`` (with repetition); a slot's count
   (0, 1 or 2) multiplies its wavenumber, so a slot picked twice oscillates at twice the frequency;
2. ``u = Σ_k A_k sin(2π k·count_k·x / (x[-1]-x[0]) + φ_k)``, ``A_k ~ U(0,1)``, ``φ_k ~ U(0,2π)``;
   unselected slots have wavenumber 0 and add the constant ``A_k sin φ_k`` → a non-zero mean;
   PDEBench divides by ``x[-1]-x[0]`` (= 1-Δx on cell centres), which we keep;
3. with probability 0.1 take ``|u|``; multiply by a random sign ±1;
4. with probability 0.1 multiply by the window ``½(tanh((x-x_L)/0.01) - tanh((x-x_R)/0.01))``.
   PDEBench draws the flag (``random.choice(key, 2, p=[0.9, 0.1])``), ``x_L ~ U(0.1,0.45)`` and
   ``x_R ~ U(0.55,0.9)`` from the *same* JAX key and shape, so they share one uniform variate ``u``:
   ``x_R = x_L + 0.45``, and JAX's ``choice`` (``searchsorted(cumsum(p), 1 - u)``) sets the flag iff
   ``u < 0.1``, so a windowed condition always has ``x_L < 0.135``; we reproduce that coupling.

Random numbers come from ``numpy.random.default_rng(seed)`` (JAX's PRNG stream is not reproduced
bit for bit; the distribution is). Parameters are drawn before any grid is seen, so the same
``(n, seed)`` draws the same amplitudes, phases, wavenumber counts and windows on any grid. The
functions are not quite the same: the period ``x[-1]-x[0]`` is the grid's, as in PDEBench's
generator run at that resolution (1-1/1024 on its 1024-point files, 1-1/256 on a 256-point grid, a
0.3 % difference in every wavenumber). ``evaluate_init(period=…)`` fixes another period.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InitParams:
    """Random parameters of ``n`` initial conditions (all arrays have leading dim n)."""

    counts: np.ndarray  # (n, k_tot) int: how often each wavenumber slot was picked
    amp: np.ndarray  # (n, k_tot)
    phase: np.ndarray  # (n, k_tot)
    use_abs: np.ndarray  # (n,) bool
    sign: np.ndarray  # (n,) ±1.0
    use_window: np.ndarray  # (n,) bool
    x_left: np.ndarray  # (n,)
    x_right: np.ndarray  # (n,)
    k_tot: int
    transition: float = 0.01


def sample_init_params(n: int, seed: int, k_tot: int = 4, num_choice_k: int = 2) -> InitParams:
    """Draw the random parameters of ``n`` PDEBench initial conditions (seeded, reproducible)."""
    if n <= 0:
        raise ValueError(f"init_multi: n = {n} must be > 0")
    if k_tot <= 0 or num_choice_k <= 0:
        raise ValueError(f"init_multi: k_tot = {k_tot} and num_choice_k = {num_choice_k} must be > 0")
    rng = np.random.default_rng(seed)
    selected = rng.integers(0, k_tot, size=(n, num_choice_k))
    counts = np.zeros((n, k_tot), dtype=np.int64)
    for j in range(num_choice_k):
        np.add.at(counts, (np.arange(n), selected[:, j]), 1)
    amp = rng.uniform(0.0, 1.0, size=(n, k_tot))
    phase = 2.0 * np.pi * rng.uniform(0.0, 1.0, size=(n, k_tot))
    use_abs = rng.uniform(0.0, 1.0, size=n) < 0.1
    sign = np.where(rng.uniform(0.0, 1.0, size=n) < 0.5, 1.0, -1.0)
    r = rng.uniform(0.0, 1.0, size=n)  # one variate for the flag and both edges, as PDEBench's shared key
    use_window = r < 0.1  # jax.random.choice(p=[0.9, 0.1]) on that variate: index 1 iff 1 - r > 0.9
    return InitParams(counts, amp, phase, use_abs, sign, use_window,
                      x_left=0.1 + 0.35 * r, x_right=0.55 + 0.35 * r, k_tot=k_tot)


def evaluate_init(params: InitParams, x: np.ndarray, period: float | None = None,
                  rows: slice | np.ndarray | None = None) -> np.ndarray:
    """Evaluate (a subset ``rows`` of) the initial conditions on grid ``x`` → (n, X) float64.

    ``period`` is PDEBench's ``x[-1] - x[0]`` of the grid the family is defined on (default: of ``x``).
    """
    x = np.asarray(x, dtype=np.float64)  # (X,)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"init_multi: x must be a 1D grid with ≥ 2 points, got shape {x.shape}")
    length = float(x[-1] - x[0]) if period is None else float(period)
    sel = slice(None) if rows is None else rows
    k = 2.0 * np.pi * np.arange(1, params.k_tot + 1) * params.counts[sel] / length  # (n, K)
    phase = params.phase[sel][:, :, None]  # (n, K, 1)
    u = np.einsum("nk,nkx->nx", params.amp[sel], np.sin(k[:, :, None] * x[None, None, :] + phase))  # (n, X)
    u = np.where(params.use_abs[sel][:, None], np.abs(u), u)
    u = u * params.sign[sel][:, None]
    tr = params.transition
    window = 0.5 * (np.tanh((x[None, :] - params.x_left[sel][:, None]) / tr)
                    - np.tanh((x[None, :] - params.x_right[sel][:, None]) / tr))  # (n, X)
    return np.where(params.use_window[sel][:, None], u * window, u)


def init_multi(n: int, x: np.ndarray, seed: int, k_tot: int = 4) -> np.ndarray:
    """``n`` PDEBench Burgers initial conditions on cell centres ``x`` → (n, X) float64."""
    return evaluate_init(sample_init_params(n, seed, k_tot), x)


def cell_centres(resolution: int, x_left: float = 0.0, x_right: float = 1.0) -> np.ndarray:
    """PDEBench's grid: ``xe = linspace(xL, xR, nx+1); xc = xe[:-1] + dx/2`` → (X,) float64."""
    dx = (x_right - x_left) / resolution
    return np.linspace(x_left, x_right, resolution + 1)[:-1] + 0.5 * dx
