"""Unit checks of the training building blocks that the end-to-end training tests cannot see.

The training tests compare a resumed run with an uninterrupted one: both run the same code, so a wrong EMA decay,
a warmup off by one step or a loss term computed on the wrong frame trains "identically" in both and passes.
These tests pin the hand-derivable behaviour of the EMA, the LR schedule, the stage losses and the model parts.
"""
from __future__ import annotations

import math
import random
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import ups.train.stages as stages
import ups.train.trainer as trainer
from ups.config import load_config
from ups.models.encoder import FieldEncoder
from ups.train.checkpoint import CheckpointError, capture_rng, check_compatible, restore_rng, run_folder
from ups.train.ema import EMA, warmup_decay, warmup_steps
from ups.train.latent_cache import build_latent_cache, encode_trajectories, encoder_key
from ups.train.schedules import build_scheduler, lr_factor
from ups.train.stages import StageContext

from tests.fixtures.data import travelling_sines


# ------------------------------------------------------------------ EMA
def _ema_on(value: float, decay: float) -> tuple[nn.Parameter, EMA]:
    """A one-element parameter at 0 with an EMA of it, then the parameter set to ``value``."""
    p = nn.Parameter(torch.zeros(1))
    ema = EMA([p], decay)
    with torch.no_grad():
        p.fill_(value)
    return p, ema


def test_ema_moves_the_shadow_by_one_minus_the_warmup_capped_decay() -> None:
    """shadow ← d·shadow + (1−d)·p with d_t = min(decay, (1+t)/(10+t)): t=1 caps 0.2 at 2/11, t=2 leaves 0.2."""
    p, ema = _ema_on(1.0, 0.2)
    ema.update()
    d1 = 2 / 11  # warm-up cap at update 1, below the configured 0.2
    assert float(ema.shadow[0]) == pytest.approx(1 - d1, abs=1e-6)
    ema.update()
    d2 = 0.2  # the cap is 3/12 = 0.25 now, the configured decay acts
    assert float(ema.shadow[0]) == pytest.approx(1 - d1 * d2, abs=1e-6)
    assert ema.num_updates == 2
    assert float(p.detach()) == 1.0  # the live weights are untouched


def test_ema_swap_twice_restores_and_copy_to_folds_the_average() -> None:
    """swap() exchanges live and shadow weights (twice: back); copy_to() writes the average into the live weights."""
    p, ema = _ema_on(1.0, 0.5)
    ema.update()  # shadow = 1 − 2/11 = 9/11
    avg = float(ema.shadow[0])
    ema.swap()
    assert float(p.detach()) == pytest.approx(avg) and float(ema.shadow[0]) == 1.0
    ema.swap()
    assert float(p.detach()) == 1.0 and float(ema.shadow[0]) == pytest.approx(avg)
    ema.copy_to()
    assert float(p.detach()) == pytest.approx(avg)


def test_ema_with_a_shadow_module_starts_from_the_live_weights() -> None:
    """A CD target net as the shadow: it is overwritten with the averaged parameters at construction."""
    live, target = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        target.weight.fill_(7.0)
    EMA(list(live.parameters()), 0.9, shadow_module=target)
    assert torch.equal(target.weight, live.weight) and torch.equal(target.bias, live.bias)


def test_ema_state_round_trip_keeps_the_update_count() -> None:
    """A resumed EMA goes on with the warm-up step it had reached (not from update 1 again)."""
    p, ema = _ema_on(1.0, 0.9)
    for _ in range(5):
        ema.update()
    q, other = _ema_on(1.0, 0.9)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 5 and torch.equal(other.shadow[0], ema.shadow[0])


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999])
def test_warmup_steps_is_the_first_update_whose_cap_reaches_the_decay(decay: float) -> None:
    """(10d − 1)/(1 − d) computed in floats lands a hair above an integer for 0.9 (80.00000000000001) and 0.9999;
    its ceiling was one update too late (81 where update 80 already reaches 81/90 = 0.9)."""
    t = warmup_steps(decay)
    assert warmup_decay(t) >= decay
    assert t == 0 or warmup_decay(t - 1) < decay


def test_warmup_steps_matches_the_documented_counts() -> None:
    assert warmup_steps(0.9) == 80 and warmup_steps(0.999) == 8990 and warmup_steps(0.9999) == 89990
    assert warmup_steps(0.0) == 0 and warmup_steps(1.0) == 0


# ------------------------------------------------------------------ LR schedule
def test_linear_warmup_reaches_the_base_lr_at_its_last_step() -> None:
    """Warmup over 4 steps: factors 1/4, 2/4, 3/4, 4/4, then the schedule proper (1.0 for constant)."""
    assert [lr_factor(s, 100, 4, "constant") for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_decays_over_the_steps_after_warmup() -> None:
    """14 steps, 4 of warmup: the cosine spans the other 10, 1 at step 4, ½ at step 9, 0 from step 14 on."""
    assert lr_factor(4, 14, 4, "cosine") == pytest.approx(1.0)
    assert lr_factor(6, 14, 4, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))
    assert lr_factor(9, 14, 4, "cosine") == pytest.approx(0.5)
    assert lr_factor(14, 14, 4, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(20, 14, 4, "cosine") == pytest.approx(0.0, abs=1e-12)  # past the end: stays at 0


def test_a_time_budget_advances_the_cosine_but_never_moves_it_back() -> None:
    """``min_progress`` (budget spent) takes over when ahead of the step count, not when behind it."""
    assert lr_factor(4, 14, 4, "cosine", min_progress=0.5) == pytest.approx(0.5)
    assert lr_factor(9, 14, 4, "cosine", min_progress=0.1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown scheduler"):
        lr_factor(9, 14, 4, "linear")


def _first_lr(total: int, ratio: float, kind: str, **kw) -> list[float]:
    """The lr factors of the first 6 steps of ``build_scheduler`` with base lr 1."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, total, ratio, kind, **kw)
    out = []
    for _ in range(6):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_build_scheduler_rounds_the_warmup_and_caps_it() -> None:
    """ratio 0.35 of 10 steps rounds to 4 warmup steps; ``warmup_cap`` lowers 500 warmup steps to 2."""
    assert _first_lr(10, 0.35, "constant") == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert _first_lr(1000, 0.5, "constant", warmup_cap=2) == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_build_scheduler_reads_the_budget_clock() -> None:
    """A clock at 70 % of the stage budget puts the cosine (no warmup) at 0.7 from the first step."""
    lrs = _first_lr(1000, 0.0, "cosine", clock={"progress": 0.7})
    assert lrs[0] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.7)))


# ------------------------------------------------------------------ stage losses (with stand-in models)


class _Affine(nn.Module):
    """Stand-in model: step(z) = a·z + b (recording whether its operator was in training mode), decode → zeros."""

    def __init__(self, a: float = 1.0, b: float = 1.0, context_frames: int = 1) -> None:
        super().__init__()
        self.operator = nn.Module()
        self.a, self.b, self.context_frames = a, b, context_frames
        self.step_modes: list[bool] = []
        self.residual_std = torch.tensor(1.0)

    def step(self, z: torch.Tensor) -> torch.Tensor:
        self.step_modes.append(self.operator.training)
        return self.a * z + self.b

    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        return windows[:, -1:, :]  # (B, 1, X): the newest frame

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.zeros(z.shape[0], z.shape[-1])


def _ctx(model: nn.Module, M: int, T: int, *, latents: torch.Tensor | None = None, horizon: int = 3,
         lam_r: float = 0.5, latent_var: float = 1.0, field_var: float = 1.0) -> StageContext:
    """A context over M trajectories of T frames whose field (and latent) at frame t is the constant t."""
    train = torch.arange(T, dtype=torch.float32)[None, :, None].expand(M, T, 4).clone()
    cfg = SimpleNamespace(training=SimpleNamespace(rollout_horizon=horizon, lambda_rollout=lam_r, lambda_field=0.0,
                                                   lambda_spectral=0.0, distill_micro_batch=3))
    if latents is None:
        latents = torch.arange(T, dtype=torch.float32)[None, :, None, None].expand(M, T, 2, 3).clone()
    return StageContext(model=model, cfg=cfg, train=train, device=torch.device("cpu"), latents=latents,
                        latent_var=latent_var, field_var=field_var)


def test_latent_window_gathers_consecutive_frames_from_each_start() -> None:
    """latents[m, t] = 100·m + t: trajectories [1, 2] from frames [0, 3], 3 frames each."""
    lat = (100 * torch.arange(3.0)[:, None] + torch.arange(6.0)[None, :])[:, :, None, None].expand(3, 6, 1, 2)
    ctx = _ctx(_Affine(), 3, 6, latents=lat.contiguous())
    w = ctx.latent_window(torch.tensor([1, 2]), torch.tensor([0, 3]), 3)
    assert w.shape == (2, 3, 1, 2) and w.dtype == torch.float32
    assert w[:, :, 0, 0].tolist() == [[100.0, 101.0, 102.0], [203.0, 204.0, 205.0]]


def test_context_windows_end_at_the_frame_and_repeat_frame_0_before_the_start() -> None:
    """3 context frames for frames 0 and 4: (0, 0, 0) and (2, 3, 4), oldest first."""
    ctx = _ctx(_Affine(context_frames=3), 2, 6)
    w = ctx.context_windows(torch.tensor([0]), torch.tensor([[0, 4]]))
    assert w.shape == (1, 2, 3, 4)
    assert w[0, :, :, 0].tolist() == [[0.0, 0.0, 0.0], [2.0, 3.0, 4.0]]


def test_starts_reach_the_last_allowed_start() -> None:
    """``_starts(n, t_max)`` draws every start 0..t_max (inclusive): the last window of a trajectory is trained on."""
    got = set(stages._starts(300, 2, torch.Generator().manual_seed(0)).tolist())
    assert got == {0, 1, 2}


def test_operator_loss_weights_the_first_step_one_and_later_steps_lambda_rollout() -> None:
    """Latent at frame t is t and step(z) = z + 2, so step k errs by k: per-step MSE k². Horizon 3 over 4 frames
    (start 0 forced), λ_rollout ½: (1·1 + ½·4 + ½·9) / (1 + ½ + ½) = 3.75, over latent_var 2: 1.875."""
    ctx = _ctx(_Affine(b=2.0), 5, 4, horizon=3, lam_r=0.5, latent_var=2.0)
    loss = stages.operator_loss(ctx, torch.arange(5), torch.Generator().manual_seed(0))
    assert float(loss) == pytest.approx(3.75 / 2.0)


def test_operator_loss_of_an_exact_step_is_zero_and_the_horizon_is_clamped_to_the_frames() -> None:
    """step(z) = z + 1 reproduces every frame: zero loss. Horizon 9 on 4 frames rolls out the 3 there are."""
    assert float(stages.operator_loss(_ctx(_Affine(b=1.0), 3, 4, horizon=9), torch.arange(3),
                                      torch.Generator().manual_seed(0))) == 0.0
    ctx = _ctx(_Affine(b=2.0), 3, 4, horizon=9, lam_r=1.0)
    assert float(stages.operator_loss(ctx, torch.arange(3), torch.Generator().manual_seed(0))) == pytest.approx(
        (1 + 4 + 9) / 3)


def test_autoencoder_loss_reconstructs_frames_up_to_the_last() -> None:
    """Frames 0 and 1 hold 0 and 1, the decoder outputs 0: the loss is the share of frame-1 picks (over
    field_var). With the last frame never drawn it would be 0."""
    ctx = _ctx(_Affine(), 400, 2, field_var=1.0)
    loss = float(stages.autoencoder_loss(ctx, torch.arange(400), torch.Generator().manual_seed(0)))
    assert 0.4 < loss < 0.6
    ctx.field_var = 4.0
    assert float(stages.autoencoder_loss(ctx, torch.arange(400), torch.Generator().manual_seed(0))) == \
        pytest.approx(loss / 4.0)


def test_spectral_loss_is_relative_to_the_true_spectrum() -> None:
    """|F(2u) − F(u)|² = |F(u)|²: a prediction twice the truth (or zero) scores exactly 1, the truth 0."""
    u = torch.randn(3, 16, generator=torch.Generator().manual_seed(0)) * 5
    assert float(stages.spectral_loss(2 * u, u)) == pytest.approx(1.0, rel=1e-5)
    assert float(stages.spectral_loss(torch.zeros_like(u), u)) == pytest.approx(1.0, rel=1e-5)
    assert float(stages.spectral_loss(u, u)) == 0.0


def test_residual_pairs_are_the_next_latent_minus_the_eval_mode_step() -> None:
    """Latent at frame t is t and step(z) = 2z + 1: base = 2t + 1, residual (t + 1) − (2t + 1) = −t, with the
    operator in eval mode (no stochastic depth) during the step and back in training mode after. Over 3 frames
    both pairs (t = 0, 1) are drawn."""
    model = _Affine(a=2.0, b=1.0)
    model.operator.train()
    ctx = _ctx(model, 200, 3)
    base, r = stages.residual_pairs(ctx, torch.arange(200), torch.Generator().manual_seed(0))
    t = (base - 1) / 2
    assert torch.equal(r, -t)
    assert set(t[:, 0, 0].tolist()) == {0.0, 1.0}
    assert model.step_modes == [False] and model.operator.training


def test_estimate_residual_std_is_the_standard_deviation_of_the_residuals() -> None:
    """Residuals −t with t uniform on {0, 1, 2}: std √(2/3) ≈ 0.816 (their mean |r| would be 1)."""
    ctx = _ctx(_Affine(a=2.0, b=1.0), 600, 4)
    assert stages.estimate_residual_std(ctx, 512, seed=0) == pytest.approx(math.sqrt(2 / 3), abs=0.05)


def test_diffusion_and_distillation_see_the_residual_in_residual_std_units(monkeypatch) -> None:
    """Residual −t over residual_std 4; distillation draws ``distill_micro_batch`` (3) copies of each pair."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    monkeypatch.setattr(stages, "edm_loss", lambda teacher, r, cond, *a, **k: seen.setdefault("edm", (r, cond)))
    monkeypatch.setattr(stages, "consistency_distill_loss",
                        lambda s, t, te, r, cond, *a, **k: seen.setdefault("cd", (r, cond)))
    model = _Affine(a=2.0, b=1.0)
    model.residual_std = torch.tensor(4.0)
    model.diffusion = model.consistency = None
    model.sigma_min, model.sigma_max = 0.002, 80.0
    ctx = _ctx(model, 5, 3)
    ctx.extras.update(distill_sigmas=torch.tensor([1.0, 0.5]), student_target=None)
    stages.diffusion_loss(ctx, torch.arange(5), torch.Generator().manual_seed(0))
    stages.distill_loss(ctx, torch.arange(5), torch.Generator().manual_seed(0))
    for name, reps in (("edm", 1), ("cd", 3)):
        r, cond = seen[name]
        assert r.shape == cond.shape == (5 * reps, 2, 3)
        assert torch.equal(r * 4.0, -(cond - 1) / 2), name


def test_the_autoencoder_stage_trains_encoder_and_decoder() -> None:
    from ups.config import load_config
    from ups.models.ups_model import build_model

    model = build_model(load_config(["preset=dim8"]), grid_size=32)
    assert stages.stage_modules(model, "autoencoder") == [model.encoder, model.decoder]
    assert stages.stage_modules(model, "consistency_distill") == [model.consistency]


# ------------------------------------------------------------------ one tiny staged run, observed from inside


_STAGES = ("autoencoder", "operator", "diff_residual", "consistency_distill")


def _tiny_data() -> types.SimpleNamespace:
    """18 training trajectories of 10 frames on 32 points (decaying travelling sines), as in test_train.py."""
    return travelling_sines(24, 18, 22, data_hash="tiny-mut")


def test_a_staged_run_clips_schedules_averages_and_hands_each_stage_on(tmp_path: Path, monkeypatch) -> None:
    """18 trajectories in batches of 6: 3 optimizer steps an epoch. Checked from inside one run:
    the clip norm is each stage's grad_clip (0: none); the cosine lr (no warmup) is ½ after epoch 1 of 2;
    every step updates the stage's EMA, whose average is folded into the model at the stage's end, and every epoch
    is scored on it; each epoch shuffles and visits every trajectory once; the encoder and decoder get the
    training fields' mean and std;
    the diffusion stage sets residual_std; distillation starts the student from the trained teacher (at lr 1e-30
    it stays there) and marks the model distilled."""
    over = ["preset=dim8", "data.initial_step=4", "training.num_threads=1", "training.val_max_samples=2",
            "eval.max_samples=0", "ttc.enabled=false", "training.rollout_horizon=2",
            "stages.autoencoder.epochs=2", "stages.autoencoder.scheduler=cosine",
            "stages.autoencoder.warmup_steps_ratio=0", "stages.autoencoder.grad_clip=0.7",
            "stages.autoencoder.ema_decay=0.5", "stages.operator.epochs=1", "stages.operator.grad_clip=0",
            "stages.diff_residual.epochs=1", "stages.consistency_distill.epochs=1",
            "stages.consistency_distill.optimizer.lr=1e-30", "stages.consistency_distill.optimizer.weight_decay=0",
            "stages.consistency_distill.warmup_steps_ratio=0"] + [f"stages.{s}.batch_size=6" for s in _STAGES]
    cfg = load_config(over)
    clips: list[float] = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def clip(params, max_norm, *a, **k):
        clips.append(float(max_norm))
        return real_clip(params, max_norm, *a, **k)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    emas: list[EMA] = []

    swaps: list[int] = []

    class RecordingEMA(EMA):
        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            emas.append(self)

        def swap(self) -> None:
            swaps.append(len(emas) - 1)
            super().swap()

    monkeypatch.setattr(trainer, "EMA", RecordingEMA)
    batches: list[list[int]] = []
    ae_loss = trainer.LOSSES["autoencoder"]

    def recording_loss(ctx, idx, g):
        batches.append(sorted(idx.tolist()))
        return ae_loss(ctx, idx, g)

    monkeypatch.setitem(trainer.LOSSES, "autoencoder", recording_loss)
    data = _tiny_data()
    res = trainer.train(cfg, run_dir=tmp_path / "run", data=data)
    model = res.model

    assert clips == [0.7] * 6 + [math.inf] * 3 + [1.0] * 6  # autoencoder 2 epochs, operator (0: off), the others
    ae = [m for m in res.history if m["stage"] == "autoencoder"]
    base_lr = float(cfg.stages.autoencoder.optimizer.lr)
    assert ae[0]["lr"] == pytest.approx(0.5 * base_lr) and ae[1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert [e.num_updates for e in emas] == [6, 3, 3, 3]
    ae_params = [p for m in (model.encoder, model.decoder) for p in m.parameters()]
    assert all(torch.equal(p, s) for p, s in zip(ae_params, emas[0].shadow))  # the average was folded in
    assert swaps == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]  # each epoch is scored on the EMA weights and swapped back
    for epoch in (batches[:3], batches[3:]):  # each epoch visits every trajectory once, in a shuffled order
        assert sorted(i for b in epoch for i in b) == list(range(18))
    assert batches[:3] != [list(range(0, 6)), list(range(6, 12)), list(range(12, 18))]
    mean, std = float(data.train.mean()), float(data.train.std())
    for part in (model.encoder, model.decoder):  # both ends normalise with the training fields' statistics
        assert float(part.field_mean) == pytest.approx(mean) and float(part.field_std) == pytest.approx(std)
    assert float(model.residual_std) > 0
    assert bool(model.distilled)
    for (name, s), t in zip(model.consistency.net.state_dict().items(), model.diffusion.net.state_dict().values()):
        assert torch.equal(s, t), name


# ------------------------------------------------------------------ latent cache


def _encoder(seed: int = 0) -> FieldEncoder:
    torch.manual_seed(seed)
    return FieldEncoder(16, 4, 3, 8)


def test_the_cache_key_covers_data_dtype_and_encoder_weights() -> None:
    """A cache is reused only for the same data, dtype and encoder weights (a retrained encoder re-encodes)."""
    enc = _encoder()
    key = encoder_key(enc, "d1", "float32")
    assert key == encoder_key(enc, "d1", "float32")
    assert key != encoder_key(enc, "d2", "float32")
    assert key != encoder_key(enc, "d1", "bfloat16")
    with torch.no_grad():
        enc.out.bias.add_(1e-3)
    assert key != encoder_key(enc, "d1", "float32")


def test_build_latent_cache_reuses_a_matching_file_and_rebuilds_a_stale_one(tmp_path: Path) -> None:
    """Saved in the requested dtype; loaded back (not re-encoded) while key and (M, T) match; re-encoded for
    other trajectories or another encoder."""
    enc, traj, path = _encoder(), torch.randn(3, 5, 16), tmp_path / "latent_cache.pt"
    lat = build_latent_cache(enc, traj, "d", "bfloat16", path)
    assert lat.dtype == torch.bfloat16 and lat.shape == (3, 5, 4, 3)
    blob = torch.load(path, weights_only=True)
    torch.save({"key": blob["key"], "latents": torch.zeros_like(blob["latents"])}, path)  # marks a reuse
    assert torch.equal(build_latent_cache(enc, traj, "d", "bfloat16", path), torch.zeros_like(lat))
    fresh = build_latent_cache(enc, traj[:2], "d", "bfloat16", path)  # other (M, T): rebuilt
    assert fresh.shape[0] == 2 and torch.equal(fresh, lat[:2])
    other = _encoder(1)
    assert not torch.equal(build_latent_cache(other, traj[:2], "d", "bfloat16", path), lat[:2])


def test_encoding_the_cache_leaves_the_encoder_in_its_mode() -> None:
    """The cache encodes in eval mode and puts the encoder back as it found it (eval stays eval)."""
    enc, traj = _encoder(), torch.randn(2, 3, 16)
    for training in (True, False):
        enc.train(training)
        encode_trajectories(enc, traj)
        assert enc.training is training


# ------------------------------------------------------------------ checkpoint helpers


def test_restore_rng_replays_torch_numpy_and_python_draws() -> None:
    """A resumed epoch draws what the uninterrupted one drew: every global RNG is put back, the numpy one
    including its position in the key array."""
    np.random.seed(3)
    np.random.rand(5)  # a position other than 0 in the key array
    state = capture_rng()
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    restore_rng(state)
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def test_a_checkpoint_of_another_grid_is_refused() -> None:
    cfg = load_config(["preset=dim8"])
    from ups.config import to_dict

    state = {"config": to_dict(cfg), "grid_size": 32, "path": "x/checkpoint.pt"}
    check_compatible(state, cfg, 32)
    with pytest.raises(CheckpointError, match="grid_size: checkpoint=32 requested=64"):
        check_compatible(state, cfg, 64)


def test_run_folder_is_the_folder_above_checkpoints() -> None:
    assert run_folder(Path("runs/a/checkpoints/epoch_0003/checkpoint.pt")) == Path("runs/a")
    assert run_folder(Path("elsewhere/x/checkpoint.pt")) is None
