"""`train(cfg, …)`: the staged UPS training every sweep trial runs.

Stages run in order (``ups.train.stages.STAGES``), each with its own AdamW, warmup + constant|cosine
schedule, EMA, grad clip, batch size and gradient accumulation. After every epoch the validation
rollout is scored (``ups.metrics``) and ``report(metrics, checkpoint_dir)`` is called. Checkpoints
hold everything needed to continue mid-stage bit-for-bit on CPU (weights, EMA, optimizer,
scheduler, RNG states, the stage's sample generator, elapsed time, history).
"""
from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ups.config import ConfigError, config_hash, to_dict
from ups.models.ups_model import UPSModel, build_model, count_parameters
from ups.train.checkpoint import (CheckpointError, capture_rng, check_compatible, read_checkpoint, restore_rng,
                                  save_checkpoint, saved_checkpoints)
from ups.train.ema import EMA
from ups.train.latent_cache import build_latent_cache
from ups.train.schedules import build_scheduler
from ups.train.stages import (LOSSES, STAGES, StageContext, distill_sigmas, estimate_residual_std,
                              stage_modules)

Report = Callable[[dict, "Path | None"], None]
KEEP_CHECKPOINTS = 2


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient stopped a stage; ``checkpoint`` holds the last good state."""

    def __init__(self, message: str, checkpoint: Path) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    model: UPSModel
    cfg: Any
    metrics: dict  # the final report
    history: list[dict]
    checkpoint: Path  # final checkpoint file
    run_dir: Path
    params: int
    stopped_early: bool = False


@dataclass
class _Run:
    """Mutable state of one training run."""

    cfg: Any
    model: UPSModel
    data: Any
    ctx: StageContext
    run_dir: Path
    report: Report | None
    device: torch.device
    params: int
    elapsed0: float = 0.0  # wall clock spent before this process (resumed runs)
    t_start: float = field(default_factory=time.perf_counter)
    global_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    budget_hit: bool = False
    # the newest checkpoint this run wrote or resumed from: a whole, consistent state to restart a divergence from
    good_ckpt: Path | None = None
    # the val round trip (ups.reconstruction) once the autoencoder stage is over: its encoder and decoder are frozen
    # from then on, so each later epoch would recompute the same figure (about a quarter of a validation)
    val_round_trip: float | None = None

    def wall(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t_start


# ------------------------------------------------------------------ helpers
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"training.device={name} but CUDA is not available. Fix: training.device=auto or cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"training.device={name} but this process sees {torch.cuda.device_count()} CUDA device(s). "
                          f"Fix: training.device=cuda (the first), or cuda:<0…{torch.cuda.device_count() - 1}>")
    return dev


def reset_gpu_peak(device: torch.device) -> None:
    """Start a run's GPU memory peak from what it holds now: a Ray worker reused for the next trial keeps
    the previous trial's cached blocks and peak otherwise."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def gpu_memory(device: torch.device) -> dict[str, float]:
    """``gpu_mem_peak_mib``: the most GPU memory PyTorch's allocator held (reserved) since the run started,
    what a trial needs of its GPU share apart from the CUDA context (docs/GPU.md measures that);
    ``gpu_mem_total_mib``: the GPU's size. Empty off CUDA."""
    if device.type != "cuda":
        return {}
    return {"gpu_mem_peak_mib": round(torch.cuda.max_memory_reserved(device) / 2 ** 20, 1),
            "gpu_mem_total_mib": round(torch.cuda.get_device_properties(device).total_memory / 2 ** 20, 1)}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def check_data(data: Any, cfg: Any) -> None:
    """Fail before compute is spent when the data cannot feed the protocol."""
    src = getattr(data, "source", "<data>")
    init = int(cfg.data.initial_step)
    for split in ("train", "val"):
        u = getattr(data, split, None)
        if not isinstance(u, torch.Tensor) or u.ndim != 3:
            raise ValueError(f"{src}: split '{split}' must be a (N, T, X) tensor, got "
                             f"{None if u is None else tuple(getattr(u, 'shape', ()))}. Fix: load it with "
                             "ups.data.protocol.load_protocol.")
        if u.shape[0] < 1:
            raise ValueError(f"{src}: split '{split}' is empty. Fix: raise data.n or lower data.val_ratio.")
        if u.shape[1] <= init:
            raise ValueError(f"{src}: split '{split}' has {u.shape[1]} frames but data.initial_step={init}. "
                             "Fix: lower data.initial_step or reduced_resolution_t.")
        if not torch.isfinite(u).all():
            raise ValueError(f"{src}: split '{split}' contains NaN/Inf values. Fix: regenerate the file "
                             "(`ups data generate …`).")
    if data.val.shape[-1] != data.train.shape[-1]:
        raise ValueError(f"{src}: train and val grids differ ({data.train.shape[-1]} vs {data.val.shape[-1]}).")


@torch.no_grad()
def rollout_eval(model: UPSModel, traj: torch.Tensor, initial_step: int, batch_size: int = 64,
                 device: torch.device | str = "cpu", with_round_trip: bool = True) -> dict[str, float]:
    """Deterministic rollout from the first ``initial_step`` frames of (B, T, X); metrics of ups.metrics, and with
    ``with_round_trip`` ``recon_nrmse``: the autoencoder's round trip of the same frames (``ups.reconstruction``)."""
    from ups.metrics import rollout_metrics
    from ups.reconstruction import round_trip, round_trip_metrics

    was = model.training
    model.eval()
    preds, recons = [], []
    for i in range(0, traj.shape[0], batch_size):
        u = traj[i:i + batch_size].to(device)
        roll = model.rollout(u[:, :initial_step], u.shape[1] - initial_step)  # (b, T-init, X)
        preds.append(torch.cat([u[:, :initial_step], roll], dim=1).float().cpu())
        if with_round_trip:
            recons.append(round_trip(model, u, initial_step, batch_size).float().cpu())  # (b, T-init, X)
    model.train(was)
    true = traj.float().cpu()
    out = rollout_metrics(torch.cat(preds), true, initial_step)
    if with_round_trip:
        out.update(round_trip_metrics(torch.cat(recons), true, initial_step, bands=False))
    return out


def _autocast(run: _Run):
    if run.device.type == "cuda" and str(run.cfg.training.amp) == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


# ------------------------------------------------------------------ checkpoints
def _payload(run: _Run, stage: str, epoch: int, opt, sched, ema: EMA | None, gen: torch.Generator,
             extra: dict | None = None) -> dict:
    return {
        "config": to_dict(run.cfg),
        "config_hash": config_hash(run.cfg),
        "grid_size": run.model.grid_size,
        "data_hash": str(getattr(run.data, "data_hash", "")),
        "model": {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()},
        "stage": stage,
        "epoch": epoch,
        "global_epoch": run.global_epoch,
        "optimizer": opt.state_dict() if opt is not None else {},
        "scheduler": sched.state_dict() if sched is not None else {},
        "ema": ema.state_dict() if ema is not None else {},
        "generator": gen.get_state(),
        "rng": capture_rng(),
        "wall_clock": run.wall(),
        "history": json.dumps(run.history),
        "params": run.params,
        "budget_hit": run.budget_hit,  # a resume from a training.time_budget_s stop must not train the next stages
        **(extra or {}),
    }


def _save_epoch(run: _Run, payload: dict) -> Path:
    root = run.run_dir / "checkpoints"
    d = root / f"epoch_{run.global_epoch:04d}"
    run.good_ckpt = save_checkpoint(d, payload)
    (root / "LATEST").write_text(d.name + "\n")
    olds = sorted(p for p in root.glob("epoch_*") if p.is_dir() and p != d)
    for p in olds[:-(KEEP_CHECKPOINTS - 1)] if KEEP_CHECKPOINTS > 1 else olds:
        shutil.rmtree(p, ignore_errors=True)
    return d


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest epoch checkpoint of a run folder, if any."""
    marker = Path(run_dir) / "checkpoints" / "LATEST"
    if marker.exists():
        p = marker.parent / marker.read_text().strip() / "checkpoint.pt"
        if p.exists():
            return p
    return None


def resume_path(path: Path | str) -> Path:
    """What a resume names: a checkpoint file or the folder that holds it, or a run folder (its newest
    checkpoint, ``latest_checkpoint``)."""
    rp = Path(path).expanduser()
    if rp.is_dir() and not (rp / "checkpoint.pt").exists() and (latest := latest_checkpoint(rp)) is not None:
        return latest
    return rp


# ------------------------------------------------------------------ one stage
def adopt_config_hparams(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR, ema: EMA,
                         scfg: Any) -> list[str]:
    """A resumed stage goes on with the config's lr, betas, weight decay and EMA decay, not the checkpoint's.

    A plain resume has the same values and changes nothing (bit for bit); PBT resumes a trial from another
    trial's checkpoint with perturbed values, which must take effect from there. Warmup and the schedule
    kind already come from the config (the LambdaLR is rebuilt from it). Returns what changed."""
    lr, wd = float(scfg.optimizer.lr), float(scfg.optimizer.weight_decay)
    betas = tuple(float(b) for b in scfg.optimizer.betas)
    changed: list[str] = []
    if any(b != lr for b in sched.base_lrs):
        sched.base_lrs = [lr] * len(sched.base_lrs)
        for g in opt.param_groups:
            g["initial_lr"] = lr
        _apply_schedule(opt, sched)
        changed.append("lr")
    for name, value in (("betas", betas), ("weight_decay", wd)):
        if any((tuple(g[name]) if name == "betas" else g[name]) != value for g in opt.param_groups):
            for g in opt.param_groups:
                g[name] = value
            changed.append(name)
    if ema.decay != float(scfg.ema_decay):
        ema.decay = float(scfg.ema_decay)
        changed.append("ema_decay")
    return changed


def realign_schedule(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR, step: int) -> bool:
    """Put the LR schedule at optimizer step ``step`` (a resumed stage: its epochs done × steps per epoch).

    Checkpoints are taken at epoch ends, so a plain resume is already there and nothing moves. A trial
    that PBT resumes with another ``batch_size`` or ``accum_steps`` has another number of steps per
    epoch: the checkpoint's step counter, counted in the old steps, would put it at another point of
    its warmup and cosine decay than the epochs it has trained. Returns whether it moved."""
    if sched.last_epoch == step:
        return False
    sched.last_epoch = step
    _apply_schedule(opt, sched)
    return True


def _apply_schedule(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Set each group's lr to its base lr × the schedule's factor at the schedule's current step."""
    for g, base, factor in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas):
        g["lr"] = base * factor(sched.last_epoch)
    sched._last_lr = [g["lr"] for g in opt.param_groups]  # what get_last_lr() reports


def _run_stage(run: _Run, stage: str, resume: dict | None) -> None:
    cfg, model, ctx = run.cfg, run.model, run.ctx
    scfg = cfg.stages[stage]
    si = STAGES.index(stage)
    epochs = int(scfg.epochs)
    modules = stage_modules(model, stage)
    params = [p for m in modules for p in m.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)

    # stage preparation (deterministic, recomputed identically on resume)
    if stage in ("operator", "diff_residual", "consistency_distill") and ctx.extras.get("cache_ready") is not True:
        _prepare_latents(run)
    if stage == "diff_residual" and resume is None:
        model.residual_std.fill_(estimate_residual_std(ctx, 512, int(cfg.training.seed) + 7))
        model.distilled.fill_(False)
    ema_target = None
    if stage == "consistency_distill":
        if resume is None:
            model.consistency.net.load_state_dict(model.diffusion.net.state_dict())
        ema_target = copy.deepcopy(model.consistency).requires_grad_(False)
        ctx.extras["student_target"] = ema_target
        ctx.extras["distill_sigmas"] = distill_sigmas(cfg).to(run.device)

    M = ctx.train.shape[0]
    bs = int(scfg.batch_size)
    accum = int(scfg.accum_steps)
    n_batches = max(1, math.ceil(M / bs))
    steps_per_epoch = max(1, math.ceil(n_batches / accum))
    opt = torch.optim.AdamW(params, lr=float(scfg.optimizer.lr), betas=tuple(scfg.optimizer.betas),
                            weight_decay=float(scfg.optimizer.weight_decay))
    stage_budget = float(scfg.time_budget_s)
    total_budget = float(cfg.training.time_budget_s)
    # with a stage time budget, warmup is capped and the cosine decay also follows the clock
    clock = {"progress": 0.0}
    sched = build_scheduler(opt, epochs * steps_per_epoch, float(scfg.warmup_steps_ratio), str(scfg.scheduler),
                            clock=clock, warmup_cap=200 if stage_budget > 0 else None)
    ema = EMA(params, float(scfg.ema_decay), shadow_module=ema_target)
    gen = torch.Generator().manual_seed(int(cfg.training.seed) * 1009 + si)
    start_epoch = 0
    # a resumed stage keeps the time it already spent: its budget and the clock-driven decay go on from there
    spent0 = float(resume.get("stage_elapsed_s", 0.0)) if resume is not None else 0.0
    if stage_budget > 0:  # before the resume below re-applies the schedule (a PBT realign or new lr)
        clock["progress"] = min(1.0, spent0 / stage_budget)
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        ema.load_state_dict(resume["ema"])
        gen.set_state(resume["generator"])
        restore_rng(resume["rng"])
        start_epoch = int(resume["epoch"])
        if start_epoch < epochs:
            realign_schedule(opt, sched, start_epoch * steps_per_epoch)
        adopt_config_hparams(opt, sched, ema, scfg)

    stage_t0 = time.perf_counter() - spent0
    loss_fn = LOSSES[stage]
    for epoch in range(start_epoch, epochs):
        model.train()
        t_ep = time.perf_counter()
        # What a divergence saves as last_good: a whole state (weights, optimizer, schedule, EMA, RNG) from before
        # the failing steps, not the weights at the failing batch (those of the steps that blew up: a restart from
        # them diverged again at once, the saved epoch count having put the LR schedule back at the epoch's start).
        # That is the newest checkpoint this run wrote or resumed from; before it has one, a copy in memory of the
        # state this epoch starts from (a copy every epoch costs time and a model + Adam state of host memory).
        good = None if run.good_ckpt is not None else _cpu_copy(
            _payload(run, stage, epoch, opt, sched, ema, gen, {"stage_elapsed_s": time.perf_counter() - stage_t0}))
        perm = torch.randperm(M, generator=gen)
        sum_loss, n_loss, n_samples = 0.0, 0, 0
        stop = False
        for b in range(n_batches):
            idx = perm[b * bs:(b + 1) * bs]
            with _autocast(run):
                loss = loss_fn(ctx, idx, gen)
            if not torch.isfinite(loss):
                _diverged(run, stage, epoch, b, good, f"loss = {float(loss.detach())}")
            # mean over the batches of this optimizer step: the last group of an epoch can hold fewer than accum
            (loss / min(accum, n_batches - b // accum * accum)).backward()
            sum_loss += float(loss.detach())
            n_loss += 1
            n_samples += len(idx)
            if (b + 1) % accum == 0 or b == n_batches - 1:
                gnorm = torch.nn.utils.clip_grad_norm_(params, float(scfg.grad_clip) if scfg.grad_clip > 0 else float("inf"))
                if not torch.isfinite(gnorm):
                    opt.zero_grad(set_to_none=True)
                    _diverged(run, stage, epoch, b, good, f"gradient norm = {float(gnorm)}")
                opt.step()
                opt.zero_grad(set_to_none=True)
                if stage_budget > 0:
                    clock["progress"] = min(1.0, (time.perf_counter() - stage_t0) / stage_budget)
                sched.step()
                ema.update()
            over_stage = stage_budget > 0 and time.perf_counter() - stage_t0 > stage_budget
            over_total = total_budget > 0 and run.wall() > total_budget
            if over_stage or over_total:
                run.budget_hit = run.budget_hit or over_total
                stop = True
                break
        run.global_epoch += 1
        last = stop or epoch == epochs - 1
        metrics = _epoch_metrics(run, stage, epoch + 1, sum_loss / max(1, n_loss), ema,
                                 n_samples / max(1e-9, time.perf_counter() - t_ep), time.perf_counter() - t_ep,
                                 float(opt.param_groups[0]["lr"]))
        if stop:
            metrics["budget_exhausted"] = True
        every = max(1, int(cfg.training.checkpoint_every))
        ckpt_dir = None
        run.history.append(metrics)  # before the checkpoint: a run resumed from it had lost this epoch's record
        if last or run.global_epoch % every == 0:
            # a budget stop finishes the stage: the checkpoint says so, a resume moves on
            ckpt_dir = _save_epoch(run, _payload(run, stage, epochs if stop else epoch + 1, opt, sched, ema, gen,
                                                 {"stage_elapsed_s": time.perf_counter() - stage_t0}))
        if run.report is not None:
            run.report(dict(metrics), ckpt_dir)
        if stop:
            break
    _finish_stage(run, stage, ema)


def _finish_stage(run: _Run, stage: str, ema: EMA) -> None:
    """Fold the stage's EMA weights into the model and do the stage's bookkeeping."""
    ema.copy_to()
    for p in run.model.parameters():
        p.requires_grad_(False)
    if stage == "autoencoder":
        run.ctx.extras.pop("cache_ready", None)
    if stage == "consistency_distill":
        run.model.distilled.fill_(True)
        run.ctx.extras.pop("student_target", None)


def _prepare_latents(run: _Run) -> None:
    ctx, cfg = run.ctx, run.cfg
    if bool(cfg.training.latent_cache):
        ctx.latents = build_latent_cache(run.model.encoder, ctx.train, str(getattr(run.data, "data_hash", "")),
                                         str(cfg.training.latent_cache_dtype), run.run_dir / "latent_cache.pt",
                                         device=run.device)
        # next to the training fields (already on the device), not in host memory: there each batch was a CPU
        # gather and a copy, and on an H200 the cache ran at 0.87x of re-encoding; here a median 1.05x (docs/GPU.md)
        ctx.latents = ctx.latents.to(ctx.train.device)
        ctx.latent_var = float(ctx.latents[: min(256, ctx.latents.shape[0])].float().var())
    else:
        ctx.latents = None
        from ups.train.latent_cache import encode_trajectories

        sample = encode_trajectories(run.model.encoder, ctx.train[:64], device=run.device)
        ctx.latent_var = float(sample.var())
    ctx.latent_var = max(ctx.latent_var, 1e-8)
    ctx.extras["cache_ready"] = True


def _epoch_metrics(run: _Run, stage: str, epoch: int, train_loss: float, ema: EMA, sps: float,
                   epoch_s: float, lr: float) -> dict:
    cfg = run.cfg
    n_val = int(cfg.training.val_max_samples)
    val = run.data.val if n_val < 0 else run.data.val[:n_val]
    fresh = stage == "autoencoder" or run.val_round_trip is None
    ema.swap()  # score the averaged weights
    try:
        vm = rollout_eval(run.model, val, int(cfg.data.initial_step), device=run.device, with_round_trip=fresh)
    finally:
        ema.swap()
    if stage != "autoencoder":  # frozen autoencoder: measured at the first later epoch (this process), then kept
        if fresh:
            run.val_round_trip = vm["recon_nrmse"]
        vm["recon_nrmse"] = run.val_round_trip
    out = {"stage": stage, "epoch": epoch, "global_epoch": run.global_epoch, "train_loss": train_loss,
           "val_nrmse": vm["nrmse"], "wall_clock": run.wall(), "params": run.params, "lr": lr,
           "samples_per_s": sps, "epoch_s": epoch_s}
    out.update({f"val_{k}": v for k, v in vm.items() if k != "nrmse"})
    out.update(gpu_memory(run.device))
    return out


def _cpu_copy(obj: Any) -> Any:
    """``obj`` with every tensor copied to the CPU (an optimizer's state_dict holds its live tensors)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


def _diverged(run: _Run, stage: str, epoch: int, batch: int, good: dict | None, what: str) -> None:
    d = run.run_dir / "checkpoints" / "last_good"
    # the newest whole state before the failing steps (``good``, or the run's newest checkpoint), with the wall
    # clock spent
    if good is None:
        good = {k: v for k, v in read_checkpoint(run.good_ckpt).items() if k not in ("path", "format")}
    path = save_checkpoint(d, {**good, "wall_clock": run.wall(), "diverged": what})
    scfg = run.cfg.stages[stage]
    raise TrainingDiverged(
        f"stage '{stage}' diverged at epoch {epoch + 1}, batch {batch + 1}: {what}. Training stopped; the last "
        f"good state is saved in '{path}'. Fix: lower stages.{stage}.optimizer.lr (now {scfg.optimizer.lr}), "
        f"keep stages.{stage}.grad_clip > 0 (now {scfg.grad_clip}), or check the data for extreme values.",
        path)


def trained_epochs(history: list[dict[str, Any]]) -> dict[str, int]:
    """{stage: epochs it trained} from a run's history (each epoch's metrics: ``stage``, ``epoch`` counted from 1)."""
    out: dict[str, int] = {}
    for m in history:
        if m.get("stage") in STAGES:
            out[m["stage"]] = max(out.get(m["stage"], 0), int(m.get("epoch") or 0))
    return out


def budget_cut_stage(history: list[dict[str, Any]]) -> str | None:
    """The stage a time budget stopped (its last epoch's metrics say ``budget_exhausted``), None when none did."""
    return next((m.get("stage") for m in reversed(history) if m.get("budget_exhausted")), None)


def finished_run_start(resume: dict[str, Any], cfg: Any) -> int:
    """Where a resume from a finished run's final checkpoint (stage ``done``) goes on: the index in ``STAGES`` of the
    first stage after every stage the run trained that the config now gives more epochs than the run's own config
    did (an operator-only run, resumed with ``stages.diff_residual.epochs=8``, trains the residual on the finished
    operator), else ``len(STAGES)``: a plain resume only redoes the final evaluation.  More epochs for a stage at or
    before the last one it trained are refused, before the data: the final checkpoint is past that stage's end, and
    ``--resume runs/<id>`` with more operator epochs trained nothing and rewrote the run's metrics as done.  The
    run's own config, not its history, says what it was set to train (a stage its time budget cut short is not
    asked for more; a history written before 2026-12-05 can lack an epoch).  After a ``training.time_budget_s``
    stop the budget, not the epochs, ended the run: nothing more is trained."""
    if resume.get("stage") == "done" and resume.get("budget_hit"):
        total, spent = float(cfg.training.time_budget_s), float(resume.get("wall_clock", 0.0))
        if total <= 0 or total > spent:  # more time now: it trained nothing and recorded budget_exhausted false
            cut = budget_cut_stage(json.loads(resume.get("history", "[]")))
            raise CheckpointError(
                f"checkpoint '{resume['path']}' is the final one of a run that training.time_budget_s ended after "
                f"{spent:.0f} s" + (f", in its {cut} stage" if cut else "") + "; a budget stop ends that stage and the "
                f"run, and a resume cannot train them on with more time (training.time_budget_s="
                f"{total:g} here). Fix: train again with the larger budget (the same command without --resume), or "
                f"resume with the run's own budget to redo only its final evaluation")
    if resume.get("stage") != "done" or resume.get("budget_hit"):
        return len(STAGES)
    stages = (resume.get("config") or {}).get("stages") or {}
    was = {st: int((stages.get(st) or {}).get("epochs") or 0) for st in STAGES}
    last = max((i for i, st in enumerate(STAGES) if was[st] > 0), default=-1)
    more = [i for i, st in enumerate(STAGES) if int(cfg.stages[st].epochs) > was[st]]
    if all(i > last for i in more):
        return min(more, default=len(STAGES))
    done = trained_epochs(json.loads(resume.get("history", "[]")))
    said = "; ".join(f"stages.{STAGES[i]}.epochs={int(cfg.stages[STAGES[i]].epochs)} (the run: {was[STAGES[i]]}"
                     + (f", trained {done.get(STAGES[i], 0)}" if was[STAGES[i]] else "") + ")"
                     for i in more if i <= last)
    folder = Path(resume["path"]).parent.parent
    kept = [k for k in saved_checkpoints(folder.parent) if k.startswith("epoch_")]
    raise CheckpointError(
        f"checkpoint '{resume['path']}' is the final one of a finished run, past the end of its last stage "
        f"({STAGES[last]}), and {said} asks for more epochs of a stage it has finished. Fix: start a new run with "
        f"these settings (the same command without --resume); or, to train {STAGES[last]} on, resume from one of "
        f"its epoch checkpoints" + (f" (kept: {', '.join(str(folder / k) for k in kept)})" if kept else
                          " (none is kept in its folder)"))


# ------------------------------------------------------------------ entry point
def train(cfg: Any, *, report: Report | None = None, run_dir: Path, resume_from: Path | None = None,
          data: Any = None, val_ttc: bool = False) -> TrainResult:
    """Run every stage with epochs > 0 (resuming mid-stage from ``resume_from``); see module doc.  ``val_ttc``: the
    final report also carries ``val_nrmse_ttc``, the val rollout with TTC (a sweep that searches ``ttc.*`` keys
    ranks its trials on it; TTC is off for it when ``ttc.enabled`` is false).  Torch's CPU threads are
    ``training.num_threads`` while it runs, and the caller's again after."""
    from ups.data.cache import torch_threads

    with torch_threads(int(cfg.training.num_threads)):
        return _train(cfg, report=report, run_dir=run_dir, resume_from=resume_from, data=data, val_ttc=val_ttc)


def _train(cfg: Any, *, report: Report | None, run_dir: Path, resume_from: Path | None, data: Any,
           val_ttc: bool) -> TrainResult:
    run_dir = Path(run_dir).expanduser().resolve()
    resume = None
    if resume_from is not None:
        resume = read_checkpoint(resume_path(resume_from))
        # a diverged run's last-good checkpoint is a valid place to restart (with a changed lr)
        check_compatible(resume, cfg)  # the model config before the data (the grid once the data is loaded)
        after_done = finished_run_start(resume, cfg)
    if data is None:
        from ups.data.protocol import load_protocol

        data = load_protocol(cfg.data)
    check_data(data, cfg)
    nu = getattr(data, "nu", None)
    if nu is not None and float(cfg.data.nu) != float(nu):  # a data file's ν, recorded with the run it trains
        cfg.data.nu = float(nu)
    grid = int(data.train.shape[-1])
    if resume is not None:
        check_compatible(resume, cfg, grid)
        dh = str(getattr(data, "data_hash", ""))
        if resume.get("data_hash") and dh and resume["data_hash"] != dh:
            raise CheckpointError(f"checkpoint '{resume['path']}' was trained on data {resume['data_hash']}, "
                                  f"the requested data is {dh}. Fix: pass the same data.* settings/file; where they "
                                  f"are the same, the data generator changed since it was trained "
                                  f"(ups.data.cache.DATA_VERSION): resume with the code it was trained with, or train "
                                  f"anew (without --resume)")

    device = resolve_device(str(cfg.training.device))
    reset_gpu_peak(device)
    seed_everything(int(cfg.training.seed))
    model = build_model(cfg, grid_size=grid).to(device)
    train_u = data.train.to(device=device, dtype=torch.float32)
    if resume is not None:
        model.load_state_dict(resume["model"])
    else:
        mean, std = float(train_u.mean()), float(train_u.std().clamp_min(1e-6))
        for m in (model.encoder, model.decoder):
            m.field_mean.fill_(mean)
            m.field_std.fill_(std)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=1, default=str))
    ctx = StageContext(model=model, cfg=cfg, train=train_u, device=device,
                       field_var=float(train_u.var().clamp_min(1e-12)))
    run = _Run(cfg=cfg, model=model, data=data, ctx=ctx, run_dir=run_dir, report=report, device=device,
               params=count_parameters(model))
    if resume is not None:
        run.good_ckpt = Path(resume["path"])
        run.elapsed0 = float(resume.get("wall_clock", 0.0))
        run.global_epoch = int(resume["global_epoch"])
        run.history = json.loads(resume.get("history", "[]"))
        # a checkpoint written at a training.time_budget_s stop ends the run as the uninterrupted one ended
        # (unless the config now allows more time): without this the resume trained the remaining stages
        total = float(cfg.training.time_budget_s)
        run.budget_hit = bool(resume.get("budget_hit", False)) and total > 0 and run.elapsed0 > total

    if resume is None:
        start = 0
    else:
        start = STAGES.index(resume["stage"]) if resume["stage"] in STAGES else after_done
    for si, stage in enumerate(STAGES):
        if si < start or int(cfg.stages[stage].epochs) == 0:
            continue
        # a finished run's final checkpoint holds no stage in progress: the stages after it start afresh
        res = resume if (resume is not None and si == start and resume["stage"] in STAGES) else None
        if res is not None and int(res["epoch"]) >= int(cfg.stages[stage].epochs):
            _resume_finished_stage(run, stage, res)  # also after a budget stop: the stop folded the EMA too
            continue
        if run.budget_hit:
            break
        _run_stage(run, stage, res)

    # the trained weights are saved before evaluation, so a failing evaluation loses nothing
    final_dir = run_dir / "checkpoints" / "final"
    ckpt = save_checkpoint(final_dir, _payload(run, "done", 0, None, None, None, torch.Generator()))
    (run_dir / "checkpoints" / "LATEST").write_text("final\n")
    (run_dir / "metrics.json").write_text(json.dumps({"final": None, "history": run.history}, indent=1,
                                                     default=float))
    final = _final_report(run, val_ttc)
    (run_dir / "metrics.json").write_text(json.dumps({"final": final, "history": run.history}, indent=1,
                                                     default=float))
    if report is not None:
        report(dict(final), ckpt.parent)
    return TrainResult(model=model.eval(), cfg=cfg, metrics=final, history=run.history, checkpoint=ckpt,
                       run_dir=run_dir, params=run.params, stopped_early=run.budget_hit)


def _resume_finished_stage(run: _Run, stage: str, res: dict) -> None:
    """A checkpoint written at the end of a stage: redo only the EMA fold (and stage bookkeeping)."""
    modules = stage_modules(run.model, stage)
    params = [p for m in modules for p in m.parameters()]
    target = copy.deepcopy(run.model.consistency) if stage == "consistency_distill" else None
    ema = EMA(params, float(run.cfg.stages[stage].ema_decay), shadow_module=target)
    ema.load_state_dict(res["ema"])
    restore_rng(res["rng"])
    _finish_stage(run, stage, ema)


def _final_report(run: _Run, val_ttc: bool = False) -> dict:
    cfg, model = run.cfg, run.model
    model.eval()
    last = run.history[-1] if run.history else {}
    final: dict[str, Any] = {"stage": "done", "epoch": last.get("epoch", 0), "global_epoch": run.global_epoch,
                             "train_loss": last.get("train_loss", float("nan")), "params": run.params,
                             "done": True, "budget_exhausted": run.budget_hit}
    n_val = int(cfg.training.val_max_samples)
    val = run.data.val if n_val < 0 else run.data.val[:n_val]
    vm = rollout_eval(model, val, int(cfg.data.initial_step), device=run.device)
    final["val_nrmse"] = vm["nrmse"]
    final.update({f"val_{k}": v for k, v in vm.items() if k != "nrmse"})
    try:
        from ups.eval import evaluate, val_nrmse_ttc
    except ImportError:
        evaluate = val_nrmse_ttc = None
    if val_ttc and val_nrmse_ttc is not None and bool(cfg.ttc.enabled) and val.shape[0] > 0:
        final["val_nrmse_ttc"] = val_nrmse_ttc(model, cfg, run.data, n_val)
    test = getattr(run.data, "test", None)
    if isinstance(test, torch.Tensor) and test.shape[0] > 0 and int(cfg.eval.max_samples) != 0:  # 0: no test eval
        if evaluate is not None:
            final.update(evaluate(model, cfg, run.data, split="test"))
        else:  # evaluation module not installed: deterministic test rollout only
            n = int(cfg.eval.max_samples)
            tm = rollout_eval(model, test if n < 0 else test[:n], int(cfg.data.initial_step), device=run.device)
            final.update(tm)
    final["wall_clock"] = run.wall()
    final["params"] = run.params
    final.update(gpu_memory(run.device))  # training and the test evaluation (TTC's candidates)
    return final
