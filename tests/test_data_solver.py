"""Solver accuracy (Cole–Hopf), conservation, resolution/dt convergence, numpy cross-check, init_multi."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ups.data.initial import cell_centres, init_multi, sample_init_params
from ups.data.solver import SolverError, choose_resolution, solve_burgers, solve_single_numpy

torch.set_num_threads(1)
NU = 0.01


def cole_hopf_sine(x: np.ndarray, t: float, nu: float, ny: int = 4001) -> np.ndarray:
    """Exact solution for u0 = sin(2πx) with diffusion D = ν/π, by quadrature of the heat kernel.

    u = ∫ (x-y)/t K dy / ∫ K dy,  K = exp(-[(x-y)²/(4Dt) + (1-cos 2πy)/(4πD)]); the integrand is
    smooth and decays like a Gaussian, so the trapezoid rule on ±12 kernel widths is exact to ~1e-15 already at 3,001 nodes (checked against 40,001).
    """
    d = nu / math.pi
    s = np.linspace(-12 * math.sqrt(4 * d * t), 12 * math.sqrt(4 * d * t), ny)  # s = x - y
    out = np.empty_like(x)
    for i0 in range(0, x.size, 64):
        xi = x[i0: i0 + 64, None]  # (c, 1)
        e = -(s[None, :] ** 2 / (4 * d * t) + (1 - np.cos(2 * np.pi * (xi - s[None, :]))) / (4 * np.pi * d))
        w = np.exp(e - e.max(axis=1, keepdims=True))  # (c, ny)
        out[i0: i0 + 64] = (w @ (s / t)) / w.sum(axis=1)
    return out


@pytest.fixture(scope="module")
def sine_solution():
    x = cell_centres(1024)
    t = torch.linspace(0, 2, 201, dtype=torch.float64)
    u = solve_burgers(torch.tensor(np.sin(2 * np.pi * x))[None], NU, t)  # (1, 201, 1024)
    return x, t, u[0].double().numpy()


@pytest.mark.parametrize("frame", [50, 200])  # t = 0.5 (after the shock forms) and t = 2
def test_cole_hopf_accuracy(sine_solution, frame):
    x, t, u = sine_solution
    exact = cole_hopf_sine(x, float(t[frame]), NU)
    rel = np.linalg.norm(u[frame] - exact) / np.linalg.norm(exact)
    assert rel <= 1e-4, f"relative L2 error {rel:.2e} at t={float(t[frame])}"


def test_mass_and_energy(sine_solution, tiny_data):
    """On the saved grid (not the protocol's subsampled one): mass exact, ½∫u² non-increasing."""
    from ups.data.hdf5 import read_pdebench

    _, _, u = sine_solution
    generated = read_pdebench(tiny_data.source, max_samples=16).tensor.astype(np.float64)  # (16, 201, 256)
    for traj in [u, *generated]:  # (T, X) each
        mass = traj.mean(axis=-1)
        scale = np.abs(traj[0]).mean()
        assert np.abs(mass - mass[0]).max() <= 1e-6 * scale
        energy = 0.5 * (traj**2).mean(axis=-1)
        assert np.diff(energy).max() <= 1e-7 * energy[0], "½∫u² increased"
    assert energy[-1] < energy[0]  # viscosity dissipates


def test_resolution_and_dt_converged():
    """The automatic grid and step agree with a 2× finer grid and 2× more steps (saved 256 points)."""
    x = cell_centres(256)
    u0 = torch.tensor(init_multi(6, x, seed=11))
    t = torch.linspace(0, 2, 41, dtype=torch.float64)
    auto, info = solve_burgers(u0, NU, t, return_info=True)
    finer = solve_burgers(u0, NU, t, solver_resolution=2 * info.solver_resolution, substeps=2 * info.substeps)
    rel = ((auto - finer).norm(dim=-1) / finer.norm(dim=-1)).max()
    assert float(rel) < 2e-5, f"auto N={info.solver_resolution}, substeps={info.substeps}: rel diff {float(rel):.2e}"
    assert info.spectral_tail < 1e-5


def test_smaller_viscosity_gets_finer_grid():
    assert choose_resolution(1.0, 0.001, 1024) > choose_resolution(1.0, 0.01, 1024) >= 1024
    assert choose_resolution(1.0, 0.1, 256) == 256


def test_batched_torch_matches_numpy_reference():
    x = cell_centres(128)
    u0 = init_multi(3, x, seed=3)
    t = np.linspace(0, 0.5, 11)
    batched, info = solve_burgers(torch.tensor(u0), NU, torch.tensor(t), return_info=True)
    for i in range(3):
        ref = solve_single_numpy(u0[i], NU, t, info.solver_resolution, info.substeps)
        np.testing.assert_allclose(batched[i].numpy(), ref, atol=2e-6)


def test_solver_rejects_bad_input():
    t = torch.linspace(0, 1, 5)
    with pytest.raises(SolverError, match="power of two"):
        solve_burgers(torch.zeros(1, 100), NU, t)
    with pytest.raises(SolverError, match="nu"):
        solve_burgers(torch.zeros(1, 64), 0.0, t)
    with pytest.raises(SolverError, match="uniformly"):
        solve_burgers(torch.zeros(1, 64), NU, torch.tensor([0.0, 0.1, 0.3]))
    with pytest.raises(SolverError, match="NaN"):
        solve_burgers(torch.full((1, 64), float("nan")), NU, t)


def test_init_multi_family():
    x = cell_centres(256)
    a, b = init_multi(2000, x, seed=2022), init_multi(2000, x, seed=2022)
    assert a.shape == (2000, 256) and np.array_equal(a, b)
    assert not np.array_equal(a, init_multi(2000, x, seed=2023))
    p = sample_init_params(2000, 2022)
    assert np.all(p.counts.sum(axis=1) == 2) and p.counts.shape == (2000, 4)
    assert 0.07 < p.use_abs.mean() < 0.13 and 0.07 < p.use_window.mean() < 0.13
    assert 0.4 < (p.sign > 0).mean() < 0.6
    np.testing.assert_allclose(p.x_right - p.x_left, 0.45)  # PDEBench's shared key
    means = a.mean(axis=1)
    assert np.abs(means).mean() > 0.1  # unselected slots add constants: non-zero means
    assert np.abs(a).max() <= 4.0
    win = a[p.use_window]
    assert np.abs(win[:, :10]).max() < 1e-3 and np.abs(win[:, -10:]).max() < 1e-3  # windowed → ~0 at edges
    absd = p.use_abs & ~p.use_window
    assert np.all((a[absd] * p.sign[absd, None]) >= 0)  # |u| then a sign: one-signed


def test_init_multi_window_flag_shares_the_edges_variate():
    """PDEBench (data_gen_NLE/utils.py init_multi) draws the window flag, random.choice(key, 2, p=[0.9, 0.1]), and
    x_L, x_R, random.uniform(key, ...), from one key and shape: jax's choice is searchsorted(cumsum(p), 1 - u) on
    the same uniform u, so the flag is u < 0.1 and a windowed initial condition has x_L = 0.1 + 0.35u < 0.135."""
    p = sample_init_params(20000, 2022)
    assert 0.09 < p.use_window.mean() < 0.11
    assert p.x_left[p.use_window].max() < 0.135 + 1e-12
    assert p.x_left[~p.use_window].min() > 0.135 - 1e-12
    np.testing.assert_allclose(p.x_right - p.x_left, 0.45)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu():
    x = cell_centres(256)
    u0 = torch.tensor(init_multi(8, x, seed=1))
    t = torch.linspace(0, 1, 21, dtype=torch.float64)
    cpu = solve_burgers(u0, NU, t)
    gpu = solve_burgers(u0, NU, t, device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)


def test_gentle_flows_meet_the_documented_accuracy_of_the_automatic_step():
    """choose_substeps documents a relative L2 error ≲ 1e-5 for its step; for gentle flows (|u| < 0.5) the advected
    distance per step sets it. Checked against 4× the substeps on the same grid (the time error alone)."""
    x = cell_centres(128)
    u0 = torch.tensor(init_multi(16, x, seed=11))
    u0 = u0[u0.abs().amax(dim=-1) < 0.5]  # (3, 128): the gentle members of the family
    assert u0.shape[0] >= 2
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    auto, info = solve_burgers(u0, NU, t, return_info=True)
    ref = solve_burgers(u0, NU, t, solver_resolution=info.solver_resolution, substeps=4 * info.substeps)
    rel = ((auto - ref).norm(dim=-1) / ref.norm(dim=-1)).max()
    assert float(rel) < 1e-5, f"substeps={info.substeps}: rel diff {float(rel):.2e}"


@pytest.mark.parametrize("amplitude", [0.05, 0.3, 0.77, 1.0, 1.7, 3.9])
def test_automatic_step_never_exceeds_its_bounds_and_divides_the_save_interval(amplitude):
    """choose_substeps: dt = dt_save/substeps ≤ min(CFL/(U·k_eff), DISPLACEMENT/U), with as few substeps as that."""
    from ups.data.solver import CFL, DISPLACEMENT, choose_substeps, diffusion

    for resolution, dt_save in ((256, 0.01), (1024, 0.05), (4096, 0.01)):
        n = choose_substeps(amplitude, NU, resolution, dt_save)
        k_eff = min(2 * math.pi * (resolution // 3), max(amplitude / diffusion(NU), 2 * math.pi))
        bound = min(CFL / (amplitude * k_eff), DISPLACEMENT / amplitude)
        assert dt_save / n <= bound * (1 + 1e-9)
        assert n == 1 or dt_save / (n - 1) > bound  # one substep fewer would exceed it


@pytest.mark.parametrize("refine", [1, 2, 4])
def test_refined_internal_grid_contains_the_saved_points(refine):
    """u0 is interpolated spectrally onto solver_resolution = refine·X (the coarse Nyquist mode split in two) and
    the output read back every refine-th point: after a vanishing step the saved frame is u0, Nyquist content
    included (a random field has plenty)."""
    u0 = torch.randn(3, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.tensor([0.0, 1e-9], dtype=torch.float64)
    out = solve_burgers(u0, NU, t, solver_resolution=32 * refine, substeps=1)  # (3, 2, 32)
    torch.testing.assert_close(out[:, 1].double(), u0, atol=1e-6, rtol=0)


def test_spectral_tail_reports_the_worst_frame_of_an_under_resolved_grid():
    """sin(2πx) at ν=0.01 forms a shock by t ≈ 0.16 that needs ~512 points, then decays (by t = 10 the ramp is smooth):
    forced onto the 64 saved points the tail, the largest over all frames of the top sixth of the 2/3 band, flags it;
    the automatic grid (chosen from the half-jump of a zero-mean field) resolves it."""
    u0 = torch.tensor(np.sin(2 * np.pi * cell_centres(64)))[None]  # (1, 64)
    t = torch.linspace(0, 10, 21, dtype=torch.float64)
    _, coarse = solve_burgers(u0, NU, t, solver_resolution=64, return_info=True)
    assert coarse.spectral_tail > 1e-2
    _, auto = solve_burgers(u0, NU, t, return_info=True)
    assert auto.solver_resolution == choose_resolution(1.0, NU, 64) >= 512
    assert auto.spectral_tail < 1e-5


def test_solver_rejects_save_times_not_starting_at_zero_or_decreasing():
    """Frame 0 of the output is u0 itself, so t_save must start at 0; a uniform but decreasing or constant grid is no
    time grid."""
    u0 = torch.zeros(1, 64)
    with pytest.raises(SolverError, match=r"t_save\[0\] = 0.5 must be 0"):
        solve_burgers(u0, NU, torch.tensor([0.5, 0.6, 0.7], dtype=torch.float64))
    with pytest.raises(SolverError, match="uniformly spaced and increasing"):
        solve_burgers(u0, NU, torch.tensor([0.0, -0.1, -0.2], dtype=torch.float64))
    with pytest.raises(SolverError, match="uniformly spaced and increasing"):
        solve_burgers(u0, NU, torch.zeros(3, dtype=torch.float64))  # every frame at t = 0
    with pytest.raises(SolverError, match="uniformly spaced and increasing"):
        solve_single_numpy(np.zeros(64), NU, np.array([0.0, -0.1, -0.2]), 64, 1)


def test_dealiased_nonlinear_term_keeps_an_under_resolved_run_bounded():
    """The 2/3 rule removes the aliased part of u²: on a grid far too coarse for the shock (ν=0.003 wants ~2048
    points, it gets 64) the run stays bounded and dissipative instead of blowing up from aliasing."""
    u0 = torch.tensor(np.sin(2 * np.pi * cell_centres(32)))[None]  # (1, 32)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    u = solve_burgers(u0, 0.003, t, solver_resolution=64, substeps=200).double()  # raises if it blew up
    assert float(u.abs().max()) < 1.3  # Gibbs overshoot of the unresolved shock, no growth
    energy = 0.5 * (u**2).mean(dim=-1)[0]
    assert float(torch.diff(energy).max()) < 0
