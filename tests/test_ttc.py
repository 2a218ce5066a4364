"""Rewards and TTC beam search: physics of the rewards, honesty, never-worse, gate and budget."""
from __future__ import annotations

import inspect
import math
from dataclasses import fields

import pytest
import torch

from ups.config import ConfigError, apply_overrides, load_config
from ups.models.interface import LatentForecaster
from ups.rewards import (ContextPhysics, RewardWeights, boundary_excess, frame_penalties, frame_penalty,
                         tail_energy, trajectory_penalty)
from ups.ttc import deterministic_rollout, plan_budget, ttc_rollout, ttc_search

torch.set_num_threads(1)
X = 64
NU = 0.01 / math.pi
DT = 0.05


def heat_frames(u0: torch.Tensor, n: int, dt: float = DT) -> torch.Tensor:
    """Exact periodic heat-equation frames (mass kept, energy decays, smooth): (B, X) → (B, n, X)."""
    k = torch.fft.rfftfreq(u0.shape[-1], d=1.0 / u0.shape[-1]) * 2 * math.pi
    uh = torch.fft.rfft(u0.double(), dim=-1)
    out = [torch.fft.irfft(uh * torch.exp(-NU * 40 * k**2 * dt * (i + 1)), n=u0.shape[-1], dim=-1)
           for i in range(n)]
    return torch.stack(out, dim=1)


def smooth_fields(b: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(X, dtype=torch.float64) / X
    amp = torch.rand(b, 3, 1, generator=g, dtype=torch.float64)
    ph = torch.rand(b, 3, 1, generator=g, dtype=torch.float64) * 2 * math.pi
    kk = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)[None, :, None]
    return 0.3 + (amp * torch.sin(2 * math.pi * kk * x + ph)).sum(1)  # (B, X)


class SpectralDouble:
    """An honest stand-in LatentForecaster for unit tests (the real model is tested below).

    Latent = the last frame (N=1, D=X). ``step`` is the exact heat semigroup plus a constant
    mass drift ``bias`` (a model error that the mass reward can see); ``sample_next`` adds seeded
    random constant offsets and low-mode noise to the step.
    """

    def __init__(self, bias: float = 0.05, sigma: float = 0.05) -> None:
        self.bias, self.sigma = bias, sigma

    def encode(self, context: torch.Tensor) -> torch.Tensor:
        return context[:, -1:, :].clone()  # (B, 1, X)

    def step(self, z: torch.Tensor) -> torch.Tensor:
        return heat_frames(z[:, 0], 1)[:, :1].to(z.dtype) + self.bias  # (B, 1, X)

    def sample_next(self, z: torch.Tensor, k: int, generator: torch.Generator | None = None,
                    steps: int = 1, noise_scale: float = 1.0) -> torch.Tensor:
        base = self.step(z)[:, None]  # (B, 1, 1, X)
        b = z.shape[0]
        x = torch.arange(X, dtype=z.dtype) / X
        off = torch.randn(b, k, 1, 1, generator=generator, dtype=z.dtype)
        wav = torch.randn(b, k, 1, 1, generator=generator, dtype=z.dtype) * torch.sin(2 * math.pi * x)
        return base + self.sigma * noise_scale * (off + 0.3 * wav)  # (B, K, 1, X)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, 0]  # (B, X)


def ttc_cfg(**kw):
    base = {"ttc.threshold": 0.0}
    base.update({f"ttc.{k}": v for k, v in kw.items()})
    return apply_overrides(load_config([]), base).ttc


# ------------------------------------------------------------------------------------- rewards
def test_rewards_are_zero_for_physical_frames_and_see_each_violation():
    ctx = heat_frames(smooth_fields(4), 3)  # (B, 3, X)
    ref = ContextPhysics.from_context(ctx)
    future = heat_frames(ctx[:, -1], 5)  # the physically right continuation
    w = RewardWeights()
    assert float(trajectory_penalty(future, ref, w).abs().max()) < 1e-9

    prev, nxt = ctx[:, -1], future[:, 0]
    shifted = frame_penalties(nxt + 0.1, prev, ref)
    assert torch.allclose(shifted.mass, 0.1 / ref.scale, rtol=1e-6)
    grown = frame_penalties(prev * 1.1, prev, ref)  # energy grows by 21 %
    assert torch.allclose(grown.energy, torch.full_like(grown.energy, 0.21), rtol=1e-6)
    assert float(frame_penalties(nxt, prev, ref).energy.max()) == 0.0  # decay is not penalised

    x = torch.arange(X, dtype=torch.float64) / X
    jumped = nxt + ref.scale[:, None] * (x - 0.5)  # a jump of one RMS appears across the periodic seam
    seen = frame_penalties(jumped, prev, ref).bc  # less what the (strong) heat step dissipated elsewhere
    assert float(seen.min()) > 0.05
    assert bool((frame_penalties(nxt + 2 * ref.scale[:, None] * (x - 0.5), prev, ref).bc > seen + 0.5).all())
    assert float(frame_penalties(nxt, prev, ref).bc.max()) == 0.0
    shock = (-torch.tanh((x - 0.5) / 0.01) * torch.sin(math.pi * x)).expand(4, X)  # periodic, steep front inside
    assert float(boundary_excess(shock, shock).max()) == 0.0
    on_seam = shock.roll(X // 2, -1)  # the same front moved onto the seam: nothing new, nothing to penalise
    assert float(boundary_excess(on_seam, shock).max()) == 0.0

    noisy = nxt + 0.05 * torch.randn(4, X, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert float(frame_penalties(noisy, prev, ref).smoothness.min()) > 0.01
    assert float(tail_energy(nxt, ref.cutoff).max()) <= float(ref.tail.max()) + 1e-15


def test_reward_and_ttc_signatures_cannot_take_a_target():
    banned = {"target", "true", "truth", "y", "gt", "label", "future", "trajectory"}
    for fn in (ttc_search, ttc_rollout, frame_penalty, frame_penalties, trajectory_penalty,
               ContextPhysics.from_context):
        assert not banned & set(inspect.signature(fn).parameters), fn.__name__
    # the context summary holds one observed frame and scalars, nothing with a time axis
    ref = ContextPhysics.from_context(heat_frames(smooth_fields(2), 4))
    for f in fields(ref):
        v = getattr(ref, f.name)
        assert not isinstance(v, torch.Tensor) or v.dim() <= 2


def test_bad_weights_and_settings_are_refused():
    import types

    with pytest.raises(ConfigError, match="ttc.gamma"):  # at config load time
        ttc_cfg(gamma=0.0)
    with pytest.raises(ConfigError, match="ttc.weights.mass"):
        ttc_cfg(**{"weights.mass": -1.0})
    # and for settings built by hand (not through the schema), before any compute
    plain = dict(enabled=True, candidates=4, beam_width=2, horizon=2, max_evaluations=50, threshold=0.0,
                 steps=1, gamma=1.0, noise_scale=1.0, weights={"mass": 1.0, "energy": 1.0, "bc": 1.0,
                                                                "smoothness": 0.1})
    ctx = heat_frames(smooth_fields(2), 2)
    for key, value, match in [("gamma", 1.5, "ttc.gamma"), ("threshold", float("nan"), "ttc.threshold"),
                              ("max_evaluations", 0, "ttc.max_evaluations"),
                              ("weights", {"mass": 1.0, "energy": -1.0}, "ttc.weights.energy"),
                              ("weights", {"mas": 1.0}, "unknown reward weight")]:
        with pytest.raises(ConfigError, match=match):
            ttc_search(SpectralDouble(), ctx, 2, types.SimpleNamespace(**{**plain, key: value}))
    with pytest.raises(ValueError, match=r"\(B, Tc, X\)"):
        ContextPhysics.from_context(torch.zeros(3, X))


# ----------------------------------------------------------------------------------------- TTC
@pytest.mark.parametrize("kw", [
    dict(candidates=8, beam_width=1, horizon=1),
    dict(candidates=6, beam_width=3, horizon=2),
    dict(candidates=5, beam_width=2, horizon=3, gamma=0.5),
])
def test_ttc_never_worse_than_its_deterministic_candidate(kw):
    model = SpectralDouble()
    assert isinstance(model, LatentForecaster)
    ctx = heat_frames(smooth_fields(6, seed=3), 3)  # (B, 3, X)
    res = ttc_search(model, ctx, 6, ttc_cfg(**kw), generator=torch.Generator().manual_seed(0))
    assert res.frames.shape == (6, 6, X)
    assert torch.equal(res.det_frames, deterministic_rollout(model, ctx, 6))
    w = RewardWeights()
    ref = ContextPhysics.from_context(ctx)
    own = trajectory_penalty(res.frames, ref, w)
    assert torch.allclose(own, res.penalty)
    assert bool((res.penalty <= res.det_penalty).all())
    # the mass drift of the deterministic step is real, so the search does find better candidates
    assert bool((res.penalty < 0.8 * res.det_penalty).all())
    assert res.interventions > 0 and bool(res.used_search.any())
    assert int(res.chosen.max()) > 0
    print(f"TTC reward gain {kw}: det {res.det_penalty.mean():.4f} → ttc {res.penalty.mean():.4f}")


def test_gate_and_budget():
    model = SpectralDouble()
    ctx = heat_frames(smooth_fields(3), 2)
    res = ttc_search(model, ctx, 4, ttc_cfg(threshold=1e9, candidates=8, beam_width=3, horizon=2))
    assert res.interventions == 0 and not bool(res.used_search.any())
    assert torch.equal(res.frames, res.det_frames)
    assert res.evaluations == 3 * 4 * (1 + 3 * 2)  # deterministic reference + det candidates only

    assert plan_budget(8, 3, 2, 150).evaluations_per_step == 49
    b = plan_budget(16, 5, 3, 20)
    assert (b.candidates, b.beam_width, b.horizon) == (16, 1, 1)
    assert plan_budget(8, 3, 2, 1) == plan_budget(1, 1, 1, 150)
    res = ttc_search(model, ctx, 4, ttc_cfg(max_evaluations=13, candidates=8, beam_width=3, horizon=2),
                     generator=torch.Generator().manual_seed(0))
    assert res.budget.evaluations_per_step <= 13
    assert res.evaluations <= 3 * 4 * 13
    assert bool((res.penalty <= res.det_penalty).all())


def test_ttc_is_reproducible_and_disabled_ttc_is_the_plain_rollout():
    model = SpectralDouble()
    ctx = heat_frames(smooth_fields(3), 2)
    cfg = ttc_cfg(candidates=4, beam_width=2)
    a = ttc_rollout(model, ctx, 5, cfg, generator=torch.Generator().manual_seed(7))
    b = ttc_rollout(model, ctx, 5, cfg, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    off = ttc_rollout(model, ctx, 5, ttc_cfg(enabled=False))
    assert torch.equal(off, deterministic_rollout(model, ctx, 5))


# ------------------------------------------------------------------------ on the real UPS model
def test_ttc_on_a_tiny_real_ups_model():
    from ups.models import ups_model

    cfg = load_config(["preset=dim8", "data.resolution=256", "data.reduced_resolution=4", "ttc.threshold=0",
                       "ttc.candidates=4", "ttc.beam_width=2"])
    torch.manual_seed(0)
    model = ups_model.build_model(cfg).eval()
    model.residual_std.fill_(0.2)  # an untrained residual sampler still gives distinct candidates
    ctx = heat_frames(smooth_fields(3), int(cfg.encoder.context_frames)).float()  # (B, Tc, 64)
    with torch.no_grad():
        plain = model.rollout(ctx, 4)
    res = ttc_search(model, ctx, 4, cfg.ttc, generator=torch.Generator().manual_seed(0))
    assert torch.equal(res.det_frames, plain)
    assert res.frames.shape == plain.shape and torch.isfinite(res.frames).all()
    assert bool((res.penalty <= res.det_penalty).all())
    assert res.interventions > 0
    via_model = model.rollout(ctx, 4, ttc_cfg=cfg.ttc, generator=torch.Generator().manual_seed(0))
    assert torch.equal(via_model, res.frames)


def test_rewards_on_real_burgers_solutions():
    """True viscous Burgers continuations score ~0; the same frames with model-like errors do not."""
    from ups.data.initial import cell_centres, init_multi
    from ups.data.solver import solve_burgers

    u0 = torch.tensor(init_multi(4, cell_centres(256), seed=1))
    u = solve_burgers(u0, 0.01, torch.linspace(0, 2, 41, dtype=torch.float64))  # (4, 41, 256)
    ref = ContextPhysics.from_context(u[:, :10])
    future = u[:, 10:]
    w = RewardWeights()
    true_pen = trajectory_penalty(future, ref, w)
    assert float(true_pen.max()) < 0.05
    drift = future + 0.02 * torch.arange(1, 32, dtype=torch.float64)[None, :, None]  # mass creeps up
    noisy = future + 0.05 * torch.randn(future.shape, generator=torch.Generator().manual_seed(0),
                                        dtype=torch.float64)
    amplified = future * torch.linspace(1.01, 1.3, 31, dtype=torch.float64)[None, :, None]  # energy grows
    for bad in (drift, noisy, amplified):
        assert bool((trajectory_penalty(bad, ref, w) > true_pen + 0.1).all())


def test_a_true_shock_on_the_seam_scores_zero_and_a_jump_put_there_does_not():
    """ν = 0.001: each true frame and its predecessor rolled (periodic: still a true solution) so that the
    frame's shock sits on the seam. The seam term scores them 0; the third-difference term it replaced
    scored true ν = 0.001 frames up to 1.78 (benchmarks/seam_reward.py); a jump put on the seam is seen, less the total
    variation the step dissipated elsewhere (~8 % of it just after the shocks form here: smaller jumps hide then)."""
    from ups.data.solver import solve_burgers

    from tests.fixtures.modules import benchmark_module

    bench = benchmark_module("seam_reward")  # its d3_excess: the old term
    x_size = 256
    x = (torch.arange(x_size, dtype=torch.float64) + 0.5) / x_size
    u0 = torch.stack([torch.sin(2 * math.pi * x) + 0.5, 0.8 * torch.sin(4 * math.pi * x + 1.0) - 0.2])
    u = solve_burgers(u0, 0.001, torch.linspace(0, 1, 21, dtype=torch.float64))  # (2, 21, 256), PDEBench's 0.05 apart
    ref = ContextPhysics.from_context(u[:, :10])
    old_term = []
    for t in range(10, 21):
        frame, prev = u[:, t], u[:, t - 1]  # (2, X)
        shift = -(frame - frame.roll(1, -1)).abs().argmax(-1)  # the steepest pair (i-1, i) → (X-1, 0)
        f = torch.stack([frame[b].roll(int(shift[b])) for b in range(2)])
        p = torch.stack([prev[b].roll(int(shift[b])) for b in range(2)])
        old_term.append(bench.d3_excess(f) / ref.scale)
        assert float(frame_penalties(f, p, ref).bc.max()) == 0.0, t
        jumped = f + ref.scale[:, None] * (x - 0.5)  # a jump of one RMS on top: more than a step dissipates here
        assert float(frame_penalties(jumped, p, ref).bc.min()) > 0.3, t
    # the case the old term got wrong: one shock, on the seam, scored 0.7–4.2 in every frame of the first field
    assert float(torch.stack(old_term)[:, 0].min()) > 0.1


def test_search_runs_a_training_mode_model_deterministically_and_restores_its_mode():
    from ups.models import ups_model

    cfg = load_config(["preset=dim8", "data.resolution=256", "operator.drop_path=0.5", "ttc.candidates=1",
                       "ttc.beam_width=1"])
    torch.manual_seed(0)
    model = ups_model.build_model(cfg).train()
    torch.nn.init.normal_(model.operator.out.weight, std=0.1)  # zero-initialised: would hide stochastic depth
    ctx = heat_frames(smooth_fields(2), 1).float()
    with torch.no_grad():  # in training mode the plain rollout is random …
        assert not torch.equal(deterministic_rollout(model, ctx, 3), deterministic_rollout(model, ctx, 3))
    a = ttc_rollout(model, ctx, 3, cfg.ttc)  # … the search is not
    b = ttc_rollout(model, ctx, 3, cfg.ttc)
    assert torch.equal(a, b) and model.training
    with pytest.raises(ValueError, match="n_steps"):
        ttc_search(model, ctx, 0, cfg.ttc)


# ------------------------------------------------------------------------ edge cases (mutation review)
def test_the_context_summary_is_of_the_last_observed_frame():
    """The frame before the first forecast is the newest context frame, not the oldest."""
    ctx = heat_frames(smooth_fields(3), 4)  # the frames differ: heat decays them
    ref = ContextPhysics.from_context(ctx)
    assert torch.equal(ref.last, ctx[:, -1].double())
    assert torch.allclose(ref.energy, 0.5 * ctx[:, -1].pow(2).mean(-1))


def test_trajectory_penalty_discounts_each_frame_against_the_one_before_it():
    """Σ_t γ^t · penalty(frame_t | frame_{t-1}): frame 0 undiscounted, and each frame is judged against its own
    predecessor (frame 1 here grows energy against frame 0 but not against the context)."""
    ctx = heat_frames(smooth_fields(3), 3)
    ref = ContextPhysics.from_context(ctx)
    last = ctx[:, -1]
    frames = torch.stack([0.5 * last + 0.01, 0.8 * last, 0.7 * last], dim=1)  # (B, 3, X)
    w = RewardWeights()
    p0 = frame_penalty(frames[:, 0], last, ref, w)
    p1 = frame_penalty(frames[:, 1], frames[:, 0], ref, w)
    p2 = frame_penalty(frames[:, 2], frames[:, 1], ref, w)
    assert bool((frame_penalties(frames[:, 1], frames[:, 0], ref).energy > 0.5).all())
    assert float(frame_penalties(frames[:, 1], last, ref).energy.max()) == 0.0
    got = trajectory_penalty(frames, ref, w, gamma=0.5)
    assert torch.allclose(got, p0 + 0.5 * p1 + 0.25 * p2, rtol=1e-12)
    assert torch.allclose(trajectory_penalty(frames, ref, w), p0 + p1 + p2, rtol=1e-12)


def test_a_jump_appearing_beside_the_wrap_pair_is_a_seam_violation():
    """The seam is the three pairs (x_{X-2}, x_{X-1}), (x_{X-1}, x_0), (x_0, x_1): a jump put on either pair
    beside the wrap pair scores like one on it."""
    ctx = heat_frames(smooth_fields(4), 3)
    ref = ContextPhysics.from_context(ctx)
    prev, nxt = ctx[:, -1], heat_frames(ctx[:, -1], 1)[:, 0]
    x = torch.arange(X, dtype=torch.float64) / X
    saw = ref.scale[:, None] * (x - 0.5)  # (B, X): a jump of one RMS between x_{X-1} and x_0
    on_wrap = frame_penalties(nxt + saw, prev, ref).bc
    assert float(on_wrap.min()) > 0.05
    for shift in (-1, 1):  # the jump between x_{X-2} and x_{X-1}, then between x_0 and x_1
        beside = frame_penalties(nxt + saw.roll(shift, -1), prev, ref).bc
        assert bool((beside > 0.5 * on_wrap).all()), shift


class StillModel(SpectralDouble):
    """A model whose deterministic step keeps the last frame exactly: every penalty is exactly 0."""

    def step(self, z: torch.Tensor) -> torch.Tensor:
        return z.clone()


class FixedCandidates(SpectralDouble):
    """Stochastic candidates at fixed mass offsets from the deterministic step (no randomness)."""

    OFFSETS = (-0.01, -0.05, 0.03, -0.03, 0.06)  # the step drifts by +0.05 (bias): the 2nd cancels it

    def sample_next(self, z: torch.Tensor, k: int, generator=None, steps: int = 1,
                    noise_scale: float = 1.0) -> torch.Tensor:
        off = torch.tensor(self.OFFSETS[:k], dtype=z.dtype)[None, :, None, None]
        return self.step(z)[:, None] + off  # (B, K, 1, X)


def test_ttc_searches_only_past_the_threshold_and_returns_the_best_candidate():
    """threshold=0 searches "whenever the deterministic step is imperfect": a perfect step is not searched. With
    one step and a horizon of 1 the result is the candidate of least penalty (argmax returned the worst beam)."""
    ctx = heat_frames(smooth_fields(3), 2)
    res = ttc_search(StillModel(), ctx, 3, ttc_cfg(candidates=4, beam_width=2, **{"weights.smoothness": 0.0}))
    assert float(res.det_penalty.abs().max()) == 0.0
    assert res.interventions == 0 and not bool(res.searched.any())

    model = FixedCandidates()
    res = ttc_search(model, ctx, 1, ttc_cfg(candidates=6, beam_width=3, horizon=1))
    ref, w = ContextPhysics.from_context(ctx), RewardWeights()
    z = model.encode(ctx)
    cands = torch.cat([model.step(z)[:, None], model.sample_next(z, 5)], dim=1)  # (B, 6, 1, X)
    pens = torch.stack([frame_penalty(model.decode(cands[:, j]), ctx[:, -1], ref, w) for j in range(6)], dim=1)
    assert bool(res.searched.all())
    assert torch.allclose(res.penalty, pens.min(dim=1).values, rtol=1e-12)
    assert bool((res.chosen[:, 0] == pens.argmin(dim=1)).all())


def test_tail_energy_is_half_the_mean_square_of_the_modes_at_or_past_the_cutoff():
    """Parseval on the unit cell: a·cos(2π·m·x) carries ½·a²/2 in mode m, a constant c carries ½c² in mode 0 and the
    Nyquist mode a·(−1)^i carries ½a²; the tail counts mode m exactly when m ≥ cutoff."""
    n, a = 16, 0.3
    x = torch.arange(n, dtype=torch.float64) / n
    wave = a * torch.cos(2 * math.pi * 3 * x)
    assert float(tail_energy(wave, 3)) == pytest.approx(a * a / 4, rel=1e-12)
    assert float(tail_energy(wave, 4)) == pytest.approx(0.0, abs=1e-15)
    assert float(tail_energy(torch.full((n,), a, dtype=torch.float64), 0)) == pytest.approx(a * a / 2, rel=1e-12)
    nyquist = a * (-1.0) ** torch.arange(n, dtype=torch.float64)
    assert float(tail_energy(nyquist, n // 2)) == pytest.approx(a * a / 2, rel=1e-12)


def test_the_context_summary_keeps_the_roughest_context_frames_tail_and_the_rms_of_a_small_field():
    """``tail`` is the largest tail energy over the context frames (an older, rougher frame counts); the normaliser
    is the last frame's RMS even when it is far below 1; the default tail starts at X/4."""
    x = torch.arange(X, dtype=torch.float64) / X
    smooth = 0.01 * torch.sin(2 * math.pi * x)  # RMS 0.01/√2
    rough = smooth + 0.001 * torch.cos(2 * math.pi * (X // 4) * x)
    ctx = torch.stack([rough, smooth], dim=0)[None]  # (1, 2, X): the rough frame is the older one
    ref = ContextPhysics.from_context(ctx)
    assert ref.cutoff == X // 4
    assert float(ref.tail[0]) == pytest.approx(0.001**2 / 4, rel=1e-9)
    assert float(ref.scale[0]) == pytest.approx(0.01 / math.sqrt(2), rel=1e-12)
    assert float(frame_penalties(smooth[None] + 0.001, smooth[None], ref).mass[0]) == pytest.approx(
        0.001 * math.sqrt(2) / 0.01, rel=1e-9)
    # smoothness: only tail energy beyond the context's largest counts, as an RMS relative to the context's energy
    assert float(frame_penalties(rough[None], smooth[None], ref).smoothness[0]) == 0.0
    rougher = smooth + 0.002 * torch.cos(2 * math.pi * (X // 4) * x)  # tail 4× the context's: excess 3·0.001²/4
    got = float(frame_penalties(rougher[None], smooth[None], ref).smoothness[0])
    assert got == pytest.approx(math.sqrt(3 * 0.001**2 / 4 / float(ref.energy[0])), rel=1e-9)


def test_mass_drift_is_measured_from_the_context_not_from_the_previous_frame():
    """Mass is conserved over the whole forecast: a frame that keeps an earlier frame's drift still pays for it."""
    ctx = heat_frames(smooth_fields(2), 2)
    ref = ContextPhysics.from_context(ctx)
    drifted = ctx[:, -1] + 0.1
    assert torch.allclose(frame_penalties(drifted, drifted, ref).mass, 0.1 / ref.scale, rtol=1e-9)


def test_interior_variation_growth_is_not_a_seam_violation():
    """The seam term is capped by the seam's own variation: a spike inside a field flat at the seam adds variation
    (the smoothness term's business) but scores 0 at the seam."""
    prev = torch.zeros(1, X, dtype=torch.float64)
    spiked = prev.clone()
    spiked[0, X // 2] = 1.0  # total variation 0 → 2, none of it at the seam
    assert float(boundary_excess(spiked, prev)[0]) == 0.0


def test_each_penalty_term_is_weighted_by_its_own_weight():
    from ups.rewards import PenaltyTerms
    one = torch.ones(1, dtype=torch.float64)
    terms = PenaltyTerms(mass=one, energy=10 * one, bc=100 * one, smoothness=1000 * one)
    got = terms.total(RewardWeights(mass=1.0, energy=2.0, bc=3.0, smoothness=4.0))
    assert float(got[0]) == 1 + 20 + 300 + 4000


def test_the_planned_search_never_exceeds_max_evaluations():
    """w·k·h search decodes + 1 for the deterministic reference must fit ``max_evaluations`` whatever is asked."""
    for m in range(2, 30):
        for k, w, h in ((4, 1, 1), (2, 2, 3), (3, 3, 3), (8, 4, 2), (1, 5, 4)):
            b = plan_budget(k, w, h, m)
            assert b.evaluations_per_step <= m, (k, w, h, m, b)
            assert b.candidates == min(k, m - 1), (k, w, h, m, b)  # candidates come first


def test_the_gate_reads_the_discounted_look_ahead_of_the_deterministic_step():
    """The gate opens when Σ_j γ^j · penalty(frame_j | frame_{j-1}) of the deterministic candidate's h-frame
    look-ahead (frame_{-1} = the last context frame) exceeds the threshold: just above it shuts, just below opens."""
    model = SpectralDouble()
    ctx = heat_frames(smooth_fields(1), 2)
    look = float(trajectory_penalty(deterministic_rollout(model, ctx, 3), ContextPhysics.from_context(ctx),
                                    RewardWeights(), gamma=0.5)[0])
    assert look > 0.1
    for factor, opens in ((1.001, False), (0.999, True)):
        res = ttc_search(model, ctx, 1, ttc_cfg(candidates=3, beam_width=1, horizon=3, gamma=0.5,
                                                threshold=look * factor))
        assert bool(res.searched[0, 0]) is opens, factor


class TrapCandidates(SpectralDouble):
    """Latent (B, 2, X): the frame and a trap flag. Candidate 1 cancels the step's +0.05 drift (the best next
    frame) but springs the trap: every later step of a trapped state drifts by +1."""

    def encode(self, context: torch.Tensor) -> torch.Tensor:
        last = context[:, -1:, :].clone()
        return torch.cat([last, torch.zeros_like(last)], dim=1)

    def step(self, z: torch.Tensor) -> torch.Tensor:
        frame = heat_frames(z[:, 0], 1)[:, 0].to(z.dtype) + self.bias + z[:, 1]
        return torch.stack([frame, z[:, 1]], dim=1)

    def sample_next(self, z: torch.Tensor, k: int, generator=None, steps: int = 1,
                    noise_scale: float = 1.0) -> torch.Tensor:
        nxt = self.step(z)
        trapped = torch.stack([nxt[:, 0] - self.bias, torch.ones_like(nxt[:, 1])], dim=1)
        return trapped[:, None].expand(z.shape[0], k, 2, z.shape[-1]).clone()  # (B, K, 2, X)


def test_a_greedy_search_path_worse_than_the_plain_rollout_falls_back_to_it():
    """Greedy search (w=1, h=1) takes the trap on step 1; over 3 steps that path is far worse than the deterministic
    rollout, so TTC returns the rollout, its penalty, and candidate 0 at every step."""
    ctx = heat_frames(smooth_fields(2), 2)
    res = ttc_search(TrapCandidates(), ctx, 3, ttc_cfg(candidates=2, beam_width=1, horizon=1))
    assert bool(res.searched[:, 0].all())
    assert not bool(res.used_search.any())
    assert torch.equal(res.frames, res.det_frames.to(res.frames.dtype))
    assert torch.equal(res.penalty, res.det_penalty)
    assert int(res.chosen.abs().sum()) == 0


def test_a_search_wide_enough_to_keep_every_path_returns_the_least_penalised_path():
    """k=3 candidates, w=3 beams, h=1 and 2 steps: step 1 keeps all 3 candidates and step 2 ranks all 9 paths by
    their committed penalty, so the result is the least penalised of the 9 paths (the all-0 path is the rollout)."""
    model = FixedCandidates()
    ctx = heat_frames(smooth_fields(3), 2)
    ref, w = ContextPhysics.from_context(ctx), RewardWeights()

    def candidates(z):  # (B, N, D) → (B, 3, N, D)
        return torch.cat([model.step(z)[:, None], model.sample_next(z, 2)], dim=1)

    z0 = model.encode(ctx)
    totals, paths = [], []
    for c1 in range(3):
        z1 = candidates(z0)[:, c1]
        for c2 in range(3):
            z2 = candidates(z1)[:, c2]
            frames = torch.stack([model.decode(z1), model.decode(z2)], dim=1)
            totals.append(trajectory_penalty(frames, ref, w))
            paths.append((c1, c2))
    totals = torch.stack(totals, dim=1)  # (B, 9)
    res = ttc_search(model, ctx, 2, ttc_cfg(candidates=3, beam_width=3, horizon=1))
    assert torch.allclose(res.penalty, totals.min(dim=1).values, rtol=1e-9)
    assert torch.allclose(res.penalty, trajectory_penalty(res.frames.double(), ref, w), rtol=1e-9)
    for b in range(3):
        assert tuple(res.chosen[b].tolist()) == paths[int(totals[b].argmin())], b


def test_the_last_step_returns_the_least_committed_penalty_not_the_best_look_ahead():
    """One step, h=2: the trap candidate has the lower own penalty (0 vs the step's drift) but the far worse
    look-ahead. Look-ahead only ranks beams during the search; the result is the beam of least committed penalty."""
    ctx = heat_frames(smooth_fields(2), 2)
    res = ttc_search(TrapCandidates(), ctx, 1, ttc_cfg(candidates=2, beam_width=2, horizon=2))
    assert bool(res.used_search.all())
    assert res.chosen[:, 0].tolist() == [1, 1]
    assert bool((res.penalty < res.det_penalty).all())


def test_the_returned_path_is_the_kept_beams_own_history():
    """Trap model, k=w=2, h=1, 2 steps: the best path is (deterministic, trap), kept in beam 0 while its step-1
    parent sat in beam 1; the frames and picks returned are that path's own, and every step was searched."""
    model = TrapCandidates()
    ctx = heat_frames(smooth_fields(2), 2)
    res = ttc_search(model, ctx, 2, ttc_cfg(candidates=2, beam_width=2, horizon=1))
    assert res.chosen.tolist() == [[0, 1], [0, 1]]
    assert torch.allclose(res.frames[:, 0].double(), res.det_frames[:, 0].double(), rtol=0, atol=1e-12)
    ref = ContextPhysics.from_context(ctx)
    assert torch.allclose(res.penalty, trajectory_penalty(res.frames.double(), ref, RewardWeights()), rtol=1e-9)
    assert bool((res.penalty < res.det_penalty).all())
    assert bool(res.searched.all())
    assert res.evaluations == 2 * 2 * res.budget.evaluations_per_step  # B · T · (w·k·h + 1)


def test_disabled_ttc_spends_one_search_decode_per_step():
    ctx = heat_frames(smooth_fields(2), 2)
    res = ttc_search(SpectralDouble(), ctx, 3, ttc_cfg(enabled=False, candidates=4, beam_width=2, horizon=3))
    assert (res.budget.candidates, res.budget.beam_width, res.budget.horizon) == (1, 1, 1)
    assert res.evaluations == 2 * 3 * 2  # B · T · (1 + the deterministic reference)


class SmallSteps(FixedCandidates):
    """Per-step mass drifts +0.05 (the step), +0.02 and −0.01: a good path mixes the last two."""

    OFFSETS = (-0.03, -0.06)


def test_beams_are_ranked_by_the_whole_paths_committed_penalty():
    """k=3, w=2, h=1 over 3 steps: ranking beams by the committed penalty of the whole path so far (not of its last
    frame alone) finds here the least penalised of all 27 paths, (2, 1, 2): drifts −0.01, +0.01, 0."""
    import itertools

    model = SmallSteps()
    ctx = heat_frames(smooth_fields(1), 2)
    ref, w = ContextPhysics.from_context(ctx), RewardWeights()
    totals = {}
    for path in itertools.product(range(3), repeat=3):
        z, frames = model.encode(ctx), []
        for c in path:
            z = torch.cat([model.step(z)[:, None], model.sample_next(z, 2)], dim=1)[:, c]
            frames.append(model.decode(z))
        totals[path] = float(trajectory_penalty(torch.stack(frames, dim=1), ref, w)[0])
    best = min(totals, key=totals.get)
    assert best == (2, 1, 2)
    res = ttc_search(model, ctx, 3, ttc_cfg(candidates=3, beam_width=2, horizon=1))
    assert tuple(res.chosen[0].tolist()) == best
    assert float(res.penalty[0]) == pytest.approx(totals[best], rel=1e-9)


class DampThenRebound(TrapCandidates):
    """Latent (B, 2, X): frame and a flag. The stochastic candidate of an unflagged state halves the step's
    fluctuation about its mean (penalty 0) and sets the flag; of a flagged state it doubles it back: energy grows
    ×4 over the damped frame before it, though not over the context's last frame."""

    def sample_next(self, z: torch.Tensor, k: int, generator=None, steps: int = 1,
                    noise_scale: float = 1.0) -> torch.Tensor:
        f = heat_frames(z[:, 0], 1)[:, 0].to(z.dtype)
        mean = f.mean(-1, keepdim=True)
        gain = torch.where(z[:, 1, :1] > 0.5, 2.0, 0.5)
        cand = torch.stack([mean + gain * (f - mean), torch.ones_like(f)], dim=1)
        return cand[:, None].expand(z.shape[0], k, 2, z.shape[-1]).clone()

    def step(self, z: torch.Tensor) -> torch.Tensor:
        frame = heat_frames(z[:, 0], 1)[:, 0].to(z.dtype) + self.bias
        return torch.stack([frame, z[:, 1]], dim=1)


def test_a_stochastic_candidate_is_judged_against_its_own_beams_last_frame():
    """Step 1 takes the damped candidate; on step 2 the rebound candidate grows energy ×4 over that damped frame
    (its real predecessor), so the deterministic step is taken: (1, 0), not the rebound. (The step drifts the mass
    down, so it never grows the energy.)"""
    ctx = heat_frames(smooth_fields(2), 2)
    res = ttc_search(DampThenRebound(bias=-0.05), ctx, 2, ttc_cfg(candidates=2, beam_width=1, horizon=1))
    assert res.chosen.tolist() == [[1, 0], [1, 0]]
    assert bool(res.used_search.all())
