"""Analytic checks of the rollout metrics (no data files, no training)."""
from __future__ import annotations

import math

import pytest
import torch

from ups import metrics as M

B, T, X, TI = 6, 41, 256, 10


def _grid(n: int = X) -> torch.Tensor:
    return (torch.arange(n, dtype=torch.float64) + 0.5) / n  # cell centres on [0, 1)


def _travelling(b: int = B, t: int = T, n: int = X, seed: int = 0) -> torch.Tensor:
    """Smooth periodic fields advected at constant speed: mass and energy exactly conserved."""
    g = torch.Generator().manual_seed(seed)
    x = _grid(n)
    amp = torch.rand(b, 3, generator=g, dtype=torch.float64) + 0.2
    phase = 2 * math.pi * torch.rand(b, 3, generator=g, dtype=torch.float64)
    mean = torch.rand(b, 1, 1, generator=g, dtype=torch.float64)
    times = torch.arange(t, dtype=torch.float64) * 0.01
    u = torch.zeros(b, t, n, dtype=torch.float64)
    for k in range(3):
        arg = 2 * math.pi * (k + 1) * (x[None, None, :] - 0.3 * times[None, :, None]) + phase[:, k, None, None]
        u = u + amp[:, k, None, None] * torch.sin(arg)
    return u + mean  # (B, T, X)


def _pdebench_metric_func_nmse(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PDEBench's err_nMSE written the way metric_func computes it: layout [b, x, t, c]."""
    pred = pred.permute(0, 2, 1).unsqueeze(-1).permute(0, 3, 1, 2)  # [b, c, x, t]
    target = target.permute(0, 2, 1).unsqueeze(-1).permute(0, 3, 1, 2)
    nb, nc, nt = target.shape[0], target.shape[1], target.shape[-1]
    err_mean = torch.sqrt(torch.mean((pred.reshape(nb, nc, -1, nt) - target.reshape(nb, nc, -1, nt)) ** 2, dim=2))
    nrm = torch.sqrt(torch.mean(target.reshape(nb, nc, -1, nt) ** 2, dim=2))
    err_nmse = torch.mean(err_mean / nrm, dim=0)  # (c, t)
    return float(torch.mean(err_nmse, dim=[0, -1]))


# ------------------------------------------------------------------------------------- nRMSE
def test_perfect_prediction_scores_zero_everywhere():
    u = _travelling()
    m = M.rollout_metrics(u, u, TI)
    assert set(m) == set(M.METRIC_KEYS)
    assert m["nrmse"] == 0.0 and m["nrmse_pdebench"] == 0.0
    assert m["conservation_gap"] < 1e-12
    assert m["energy_violation"] < 1e-10
    assert m["bc_violation"] < 5e-4
    assert m["rollout_horizon"] == T - TI


def test_scaled_error_gives_known_nrmse_and_pdebench_variant():
    true = _travelling()
    c = torch.tensor([0.1, 0.2, 0.3, 0.05, 0.5, 0.25], dtype=torch.float64)
    pred = true.clone()
    pred[:, TI:] = true[:, TI:] * (1 + c[:, None, None])
    assert M.nrmse(pred, true, TI) == pytest.approx(float(c.mean()), rel=1e-12)
    assert M.nrmse_per_sample(pred, true, TI) == pytest.approx(c.tolist(), rel=1e-12)
    # context copied: PDEBench's printed number is ours × 31/41
    assert M.nrmse_pdebench(pred, true, TI) == pytest.approx(float(c.mean()) * (T - TI) / T, rel=1e-12)
    assert M.nrmse_pdebench(pred, true, TI) == pytest.approx(_pdebench_metric_func_nmse(pred, true), rel=1e-12)


def test_nrmse_pdebench_averages_the_test_loaders_batches_as_pdebenchs_metrics_loop():
    """PDEBench's metrics() sums metric_func's nRMSE over the loader's batches of 50 and divides by their count: a
    split of 120 weights its last 20 samples as a whole batch. nrmse_pdebench took the mean over all samples
    (the rest of the PDEBench set was batched already)."""
    true = _travelling(b=120, t=12, n=32, seed=4)
    g = torch.Generator().manual_seed(5)
    pred = true * (1 + torch.linspace(0.0, 0.6, 120, dtype=torch.float64)[:, None, None])  # error grows per sample
    pred = pred + 0.01 * torch.randn(pred.shape, generator=g, dtype=torch.float64)
    ti = 3
    copied = pred.clone()
    copied[:, :ti] = true[:, :ti]
    batches = [_pdebench_metric_func_nmse(copied[i:i + 50], true[i:i + 50]) for i in (0, 50, 100)]
    assert M.nrmse_pdebench(pred, true, ti) == pytest.approx(sum(batches) / 3, rel=1e-12)
    assert M.nrmse_pdebench(pred, true, ti) != pytest.approx(_pdebench_metric_func_nmse(copied, true), rel=1e-3)
    # a split of ≤ 50 samples, or of a multiple of 50: the plain mean over samples, nrmse × (T - ti) / T
    for n in (40, 100):
        assert M.nrmse_pdebench(pred[:n], true[:n], ti) == pytest.approx(
            M.nrmse(pred[:n], true[:n], ti) * (12 - ti) / 12, rel=1e-12)


def test_nrmse_matches_pdebench_metric_func_on_predicted_frames():
    true = _travelling(seed=1)
    g = torch.Generator().manual_seed(3)
    pred = true + 0.3 * torch.randn(true.shape, generator=g, dtype=torch.float64)
    ours = M.nrmse(pred, true, TI)
    ref = _pdebench_metric_func_nmse(pred[:, TI:], true[:, TI:])
    assert ours == pytest.approx(ref, rel=1e-12)
    curve = M.nrmse_per_time(pred, true, TI)
    assert curve.shape == (T - TI,)
    assert float(curve.mean()) == pytest.approx(ours, rel=1e-12)
    # pdebench variant ignores any context error: the context is copied as PDEBench does
    pred_bad_ctx = pred.clone()
    pred_bad_ctx[:, :TI] += 5.0
    assert M.nrmse_pdebench(pred_bad_ctx, true, TI) == pytest.approx(ours * (T - TI) / T, rel=1e-12)


def test_pdebench_metric_set_has_the_known_values_of_offset_and_single_mode_errors():
    """PDEBench's metric_func figures (context copied, so every figure is × 31/41): a constant offset c is an
    RMSE, cRMSE, bRMSE and Max of c and sits in Fourier mode 0, a quarter of the low band; an error a·cos(2π·6x)
    is an RMSE of a/√2, a cRMSE of 0 and mode 6's a/2, an eighth of the mid band (modes 4–11)."""
    true = _travelling()
    share = (T - TI) / T
    c = 0.1
    pred = true.clone()
    pred[:, TI:] += c
    pred[:, :TI] += 7.0  # the context is copied from the truth, as PDEBench's loop builds pred
    got = M.pdebench_metric_set(pred, true, TI)
    assert set(got) == set(M.PDEBENCH_SET_KEYS)
    for key in ("rmse_pdebench", "crmse_pdebench", "brmse_pdebench", "max_err_pdebench"):
        assert got[key] == pytest.approx(c * share, rel=1e-9), key
    assert got["frmse_low_pdebench"] == pytest.approx(c / 4 * share, rel=1e-9)
    assert got["frmse_mid_pdebench"] == pytest.approx(0.0, abs=1e-12)
    assert got["frmse_high_pdebench"] == pytest.approx(0.0, abs=1e-12)
    a = 0.2
    wave = true.clone()
    wave[:, TI:] += a * torch.cos(2 * math.pi * 6 * _grid())
    got = M.pdebench_metric_set(wave, true, TI)
    assert got["rmse_pdebench"] == pytest.approx(a / math.sqrt(2) * share, rel=1e-9)
    assert got["crmse_pdebench"] == pytest.approx(0.0, abs=1e-12)
    assert got["frmse_mid_pdebench"] == pytest.approx(a / 2 / 8 * share, rel=1e-9)
    assert got["frmse_low_pdebench"] == pytest.approx(0.0, abs=1e-12)
    assert got["frmse_high_pdebench"] == pytest.approx(0.0, abs=1e-12)
    peak = float(torch.cos(2 * math.pi * 6 * _grid()).abs().max())  # the grid's point nearest a crest
    assert got["max_err_pdebench"] == pytest.approx(a * peak * share, rel=1e-9)


def test_the_leaderboard_spells_the_pdebench_set_as_the_metrics_do():
    from ups.leaderboard import LEADERBOARD_COLUMNS, PDEBENCH_COLUMNS

    assert PDEBENCH_COLUMNS == M.PDEBENCH_SET_KEYS and set(PDEBENCH_COLUMNS) <= set(LEADERBOARD_COLUMNS)


def test_pdebench_metric_set_averages_batches_of_50_as_pdebench_does():
    """Max is the largest error in each batch of 50, averaged over the batches; cRMSE is an RMS within a batch.
    100 samples whose first 50 are off by 0.1 and last 50 by 0.3: Max 0.2 (PDEBench's batches), 0.3 in one batch
    of 100; cRMSE the mean of the two batches' RMS, 0.2, against √((0.1² + 0.3²)/2) in one batch."""
    true = _travelling(b=100, seed=2)
    off = torch.tensor([0.1] * 50 + [0.3] * 50, dtype=torch.float64)
    pred = true.clone()
    pred[:, TI:] += off[:, None, None]
    share = (T - TI) / T
    by_50 = M.pdebench_metric_set(pred, true, TI)
    assert by_50["max_err_pdebench"] == pytest.approx(0.2 * share, rel=1e-9)
    assert by_50["crmse_pdebench"] == pytest.approx(0.2 * share, rel=1e-9)
    one = M.pdebench_metric_set(pred, true, TI, batch_size=100)
    assert one["max_err_pdebench"] == pytest.approx(0.3 * share, rel=1e-9)
    assert one["crmse_pdebench"] == pytest.approx(math.sqrt((0.1**2 + 0.3**2) / 2) * share, rel=1e-9)
    assert by_50["rmse_pdebench"] == pytest.approx(one["rmse_pdebench"], rel=1e-12)  # a mean either way
    with pytest.raises(ValueError, match="batch_size must be ≥ 1"):
        M.pdebench_metric_set(pred, true, TI, batch_size=0)


def test_per_time_curve_localises_error():
    true = _travelling()
    pred = true.clone()
    pred[:, TI + 5] = 2 * true[:, TI + 5]  # error 1.0 in frame 5 only
    curve = M.nrmse_per_time(pred, true, TI)
    assert curve[5] == pytest.approx(1.0)
    assert float(curve.sum()) == pytest.approx(1.0)


def test_float32_inputs_work():
    true = _travelling().float()
    pred = 1.1 * true
    assert M.nrmse(pred, true, TI) == pytest.approx(0.1, rel=1e-5)


# ---------------------------------------------------------------------------------- physics
def test_conservative_prediction_has_zero_gap_and_drift_has_known_gap():
    u = _travelling(seed=2)
    assert M.conservation_gap(u, TI) < 1e-12
    drift = 0.05
    steps = torch.arange(T, dtype=torch.float64).clamp_min(TI - 1) - (TI - 1)  # 0 in context, 1..31 after
    pred = u + drift * steps[None, :, None]
    ref = u[:, TI - 1]
    rms = torch.sqrt((ref**2).mean(-1))  # (B,)
    expected = float((drift * steps[TI:].mean() / rms).mean())
    assert M.conservation_gap(pred, TI) == pytest.approx(expected, rel=1e-10)


def test_energy_violation_zero_for_decay_and_known_for_growth():
    u = _travelling(seed=4)
    decay = torch.exp(-0.05 * torch.arange(T, dtype=torch.float64))
    assert M.energy_violation(u * decay[None, :, None], TI) == 0.0
    g = 1.01  # amplitude grows 1% per predicted frame → E grows by g² per frame
    k = torch.arange(T, dtype=torch.float64).clamp_min(TI - 1) - (TI - 1)
    grow = u * (g**k)[None, :, None]
    expected = g ** (2 * (T - TI)) - 1  # telescoping sum of positive increments, relative to E_c
    assert M.energy_violation(grow, TI) == pytest.approx(expected, rel=1e-10)


def test_bc_violation_periodic_small_seam_large():
    x = _grid()
    periodic = torch.sin(2 * math.pi * x)[None, None, :].repeat(2, 3, 1)
    assert M.bc_violation(periodic) < 1e-4  # O((2π dx)³)
    ramp = x[None, None, :].repeat(2, 3, 1)  # sawtooth: jump of 1 at the seam
    expected = 1.0 / math.sqrt(float((x**2).mean()))  # |mismatch| ≈ 1 on both sides, over rms(x)
    assert M.bc_violation(ramp) == pytest.approx(expected, rel=0.02)
    # a smooth travelling wave is periodic: ~0 everywhere
    assert M.bc_violation(_travelling()) < 5e-4


# ---------------------------------------------------------------------------------- horizon
def test_rollout_horizon_counts_frames_until_decorrelation():
    true = _travelling(seed=5)
    pred = true.clone()
    k = torch.tensor([0, 3, 7, 12, 20, 31])
    for b in range(B):
        pred[b, TI + int(k[b]):] = -true[b, TI + int(k[b]):]  # ρ = -1 from frame k on
    assert M.rollout_horizon(pred, true, TI) == pytest.approx(float(k.double().mean()))
    # NaNs (a diverged model) count as decorrelated
    pred_nan = true.clone()
    pred_nan[:, TI + 2:] = float("nan")
    assert M.rollout_horizon(pred_nan, true, TI) == 2.0
    # a small additive error keeps ρ high: full horizon
    assert M.rollout_horizon(true + 0.01, true, TI) == T - TI


# --------------------------------------------------------------------------------------- ECE
def _gaussian_case(scale: float, s: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = _travelling(b=4, t=20, n=128, seed=seed)
    true = mu + torch.randn(mu.shape, generator=g, dtype=torch.float64)
    ens = mu[None] + scale * torch.randn((s, *mu.shape), generator=g, dtype=torch.float64)
    return ens, true


def test_ece_small_for_calibrated_large_for_overconfident():
    ens, true = _gaussian_case(1.0)
    calibrated = M.ece(ens, true, initial_step=4)
    assert calibrated < 0.01
    ens_over, true_over = _gaussian_case(0.2)
    over = M.ece(ens_over, true_over, initial_step=4)
    assert over > 0.25
    ens_under, true_under = _gaussian_case(3.0)
    assert M.ece(ens_under, true_under, initial_step=4) > 0.1
    # coverage of the over-confident ensemble is below the nominal level at every level
    cov = M.interval_coverage(ens_over, true_over, 4)
    assert bool((cov < torch.tensor(M.ECE_LEVELS, dtype=torch.float64)).all())


def test_ece_of_an_ensemble_far_from_the_truth_has_known_value():
    true = _travelling(b=2, t=12, n=32)
    for s in (5, 99):
        ens = true[None].repeat(s, 1, 1, 1) + 10.0  # every member far above the truth: rank 0
        # PIT ~ U(0, 1/(S+1)); coverage(α) = (S+1)·relu(1/(S+1) − (½ − α/2))
        lv = torch.tensor(M.ECE_LEVELS, dtype=torch.float64)
        cov = (s + 1) * torch.relu(1 / (s + 1) - (0.5 - lv / 2))
        expected = float((cov - lv).abs().mean())
        assert M.ece(ens, true, initial_step=2) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.5, abs=0.01)  # → ½ (never covers) as S grows


def test_diverged_prediction_is_reported_not_raised():
    true = _travelling()
    pred = true.clone()
    pred[:, TI + 3:] = float("nan")
    m = M.rollout_metrics(pred, true, TI)
    assert math.isnan(m["nrmse"]) and math.isnan(m["conservation_gap"])
    assert m["rollout_horizon"] == 3.0


# ---------------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors():
    u = _travelling()
    with pytest.raises(ValueError, match="differ in shape"):
        M.nrmse(u[:, :-1], u, TI)
    with pytest.raises(ValueError, match=r"\(B, T, X\)"):
        M.nrmse(u[0], u[0], TI)
    with pytest.raises(ValueError, match="initial_step"):
        M.nrmse(u, u, T)
    with pytest.raises(ValueError, match="initial_step"):
        M.conservation_gap(u, 0)
    with pytest.raises(ValueError, match="ensemble"):
        M.ece(u, u, TI)
    with pytest.raises(ValueError, match="≥ 2 members"):
        M.ece(u[None], u, TI)
    with pytest.raises(TypeError, match="torch.Tensor"):
        M.nrmse(u.numpy(), u, TI)


# ----------------------------------------------------------------------------- edge cases (mutation review)
def test_brmse_sees_an_error_at_the_last_grid_point():
    """bRMSE is the RMS of the two boundary points' errors: an error c at x_{X-1} alone is c/√2 per predicted
    frame (reading the point before it instead saw nothing)."""
    true = _travelling()
    c = 0.3
    pred = true.clone()
    pred[:, TI:, -1] += c
    got = M.pdebench_metric_set(pred, true, TI)
    assert got["brmse_pdebench"] == pytest.approx(c / math.sqrt(2) * (T - TI) / T, rel=1e-9)


def test_conservation_gap_is_measured_from_the_last_context_frame_and_either_sign_of_drift():
    """The gap compares the forecast's mass with the last context frame's (an edited first context frame changes
    nothing), and a mass loss counts as much as a gain (a signed mean let losses cancel gains or go negative)."""
    u = _travelling(seed=2)
    pred = u.clone()
    pred[:, 0] += 1.0  # the oldest context frame: no reference for the forecast
    assert M.conservation_gap(pred, TI) < 1e-12
    steps = torch.arange(T, dtype=torch.float64).clamp_min(TI - 1) - (TI - 1)
    gain = M.conservation_gap(u + 0.05 * steps[None, :, None], TI)
    loss = M.conservation_gap(u - 0.05 * steps[None, :, None], TI)
    assert gain > 0.01 and loss == pytest.approx(gain, rel=1e-10)


def test_ece_refuses_levels_at_zero_or_one_and_is_nan_for_an_ensemble_with_a_nan_member():
    """Levels 0 and 1 are no central intervals; a NaN member ranks below nothing, so a finite ECE would be made up."""
    ens, true = _gaussian_case(1.0, s=4)
    for levels in ((0.0, 0.5), (1.0,)):
        with pytest.raises(ValueError, match="levels must lie in"):
            M.ece(ens, true, 4, levels=levels)
    ens = ens.clone()
    ens[1] = float("nan")
    assert math.isnan(M.ece(ens, true, 4))


def test_rollout_metrics_bc_violation_scores_the_predicted_frames_only():
    """The context frames are the truth, not the model's: a seam jump there must not count, one in the
    forecast must."""
    x = _grid()
    true = _travelling()
    saw = (x - 0.5)[None, None, :].expand(B, T, X)
    forecast_jump = true.clone()
    forecast_jump[:, TI:] += saw[:, TI:]
    got = M.rollout_metrics(forecast_jump, true, TI)["bc_violation"]
    assert got == pytest.approx(M.bc_violation(forecast_jump[:, TI:]), rel=1e-12) and got > 0.5
    context_jump = true.clone()
    context_jump[:, :TI] += saw[:, :TI]
    assert M.rollout_metrics(context_jump, true, TI)["bc_violation"] == \
        pytest.approx(M.bc_violation(true[:, TI:]), rel=1e-12)


def test_a_flat_forecast_of_a_flat_truth_keeps_the_full_horizon():
    """Two constant fields have no correlation to compute: agreeing, they count as correlated (a decayed
    solution would otherwise score a horizon of 0)."""
    ones = torch.ones(2, 12, 64)
    assert M.rollout_horizon(ones, ones, 4) == 8
    assert M.rollout_horizon(ones + 1, ones, 4) == 0


def test_pdebench_frmse_bands_split_at_modes_4_and_12_and_scale_with_the_domain_length():
    """metric_func's bands are modes [0, 4), [4, 12) and [12, X/2]: an error a·cos(2π·m·x) is |rfft|/X = a/2 in
    mode m alone, so modes 3, 4, 11 and 12 land in low (÷4), mid (÷8), mid and high (÷117 modes of X=256); the
    figures are × Lx (``length``) while the RMSE is not."""
    true = _travelling(b=2)
    share = (T - TI) / T
    a = 0.2
    for mode, band, n_modes in ((3, "low", 4), (4, "mid", 8), (11, "mid", 8), (12, "high", X // 2 + 1 - 12)):
        pred = true.clone()
        pred[:, TI:] += a * torch.cos(2 * math.pi * mode * _grid())
        got = M.pdebench_metric_set(pred, true, TI)
        for other in ("low", "mid", "high"):
            want = a / 2 / n_modes * share if other == band else 0.0
            assert got[f"frmse_{other}_pdebench"] == pytest.approx(want, rel=1e-9, abs=1e-12), (mode, other)
    long = M.pdebench_metric_set(pred, true, TI, length=2.0)
    assert long["frmse_high_pdebench"] == pytest.approx(2 * got["frmse_high_pdebench"], rel=1e-12)
    assert long["rmse_pdebench"] == pytest.approx(got["rmse_pdebench"], rel=1e-12)
