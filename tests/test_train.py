"""Staged training: resume equals uninterrupted, NaN stop, checkpoint refusal (mismatch, corrupt)."""
from __future__ import annotations

import math
import types
from pathlib import Path

import pytest
import torch

from ups.config import load_config
from ups.train.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, resolve_path
from ups.train.trainer import TrainingDiverged, train

from tests.fixtures.data import travelling_sines

TINY = ["preset=dim8", "data.initial_step=4", "training.num_threads=1", "training.val_max_samples=4",
        "stages.autoencoder.epochs=2", "stages.operator.epochs=3", "stages.diff_residual.epochs=1",
        "stages.consistency_distill.epochs=2", "training.rollout_horizon=3", "training.lambda_rollout=1",
        "training.lambda_field=0.1", "operator.drop_path=0.2", "eval.max_samples=2", "ttc.enabled=false",
        "eval.ensemble_size=2"] + [f"stages.{s}.batch_size=6" for s in
                                   ("autoencoder", "operator", "diff_residual", "consistency_distill")]


@pytest.fixture(scope="module")
def tiny():
    return travelling_sines(30, 18, 24)


class Stop(Exception):
    pass


def _final_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_equals_uninterrupted(tiny, tmp_path):
    cfg = load_config(TINY)
    full_hist: list[dict] = []
    full = train(cfg, run_dir=tmp_path / "full", data=tiny, report=lambda m, c: full_hist.append(m))
    assert [m["stage"] for m in full_hist[:-1]] == ["autoencoder"] * 2 + ["operator"] * 3 + \
        ["diff_residual"] + ["consistency_distill"] * 2
    assert full_hist[-1]["done"] and "nrmse" in full_hist[-1]
    for stop_at in (4, 7):  # mid-operator and mid-distillation
        seen: list = []

        def interrupt(m, ckpt):
            seen.append(ckpt)
            if m["global_epoch"] == stop_at:
                raise Stop

        with pytest.raises(Stop):
            train(cfg, run_dir=tmp_path / f"cut{stop_at}", data=tiny, report=interrupt)
        resumed_hist: list[dict] = []
        res = train(cfg, run_dir=tmp_path / f"cut{stop_at}", data=tiny, resume_from=seen[-1],
                    report=lambda m, c: resumed_hist.append(m))
        a, b = _final_state(full.model), _final_state(res.model)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{k} differs after resume at global epoch {stop_at}"
        assert [m["train_loss"] for m in resumed_hist[:-1]] == [m["train_loss"] for m in full_hist[stop_at:-1]]
    # the checkpoint rebuilds the model from its own config
    model, cfg2, state = load_checkpoint(full.checkpoint)
    assert state["stage"] == "done" and cfg2.latent.dim == 8
    ctx = tiny.test[:2, :4]
    assert torch.equal(model.rollout(ctx, 3), full.model.rollout(ctx, 3))


def test_resume_with_new_hyperparameters_trains_with_them(tiny, tmp_path):
    """PBT resumes a trial from another's checkpoint with perturbed values: the config's lr, betas, weight
    decay and EMA decay take over from the checkpoint's (warmup/schedule shape and progress carry on)."""
    cfg = load_config(TINY + ["stages.operator.scheduler=constant", "stages.operator.warmup_steps_ratio=0"])
    seen: list = []

    def interrupt(m, ckpt):
        seen.append((m, ckpt))
        if m["global_epoch"] == 3:  # after operator epoch 1 of 3
            raise Stop

    with pytest.raises(Stop):
        train(cfg, run_dir=tmp_path / "a", data=tiny, report=interrupt)
    old = seen[-1][0]
    lr = float(cfg.stages.operator.optimizer.lr)
    new = load_config(TINY + ["stages.operator.scheduler=constant", "stages.operator.warmup_steps_ratio=0",
                              f"stages.operator.optimizer.lr={lr * 10}", "stages.operator.optimizer.betas=[0.5,0.9]",
                              "stages.operator.optimizer.weight_decay=0.5", "stages.operator.ema_decay=0.5"])
    hist: list[dict] = []
    train(new, run_dir=tmp_path / "a", data=tiny, resume_from=seen[-1][1], report=lambda m, c: hist.append(m))
    assert old["stage"] == "operator" and old["lr"] == pytest.approx(lr)
    assert hist[0]["stage"] == "operator" and hist[0]["epoch"] == 2
    assert hist[0]["lr"] == pytest.approx(lr * 10)

    import torch

    from ups.train.ema import EMA
    from ups.train.schedules import build_scheduler
    from ups.train.trainer import adopt_config_hparams

    p = torch.nn.Parameter(torch.zeros(2))
    op = cfg.stages.operator
    opt = torch.optim.AdamW([p], lr=lr, betas=tuple(op.optimizer.betas), weight_decay=float(op.optimizer.weight_decay))
    sched = build_scheduler(opt, 10, 0.0, "constant")
    ema = EMA([p], float(op.ema_decay))
    assert adopt_config_hparams(opt, sched, ema, cfg.stages.operator) == []  # a plain resume: nothing moves
    assert adopt_config_hparams(opt, sched, ema, new.stages.operator) == ["lr", "betas", "weight_decay", "ema_decay"]
    assert opt.param_groups[0]["betas"] == (0.5, 0.9) and ema.decay == 0.5 and sched.base_lrs == [lr * 10]


def test_resume_with_another_batch_size_keeps_the_schedule_position(tiny, tmp_path):
    """PBT may perturb batch_size: the resumed stage goes on at the point of its cosine schedule that the
    epochs it has trained reach with the new batch size, as an uninterrupted run with that batch size."""
    base = [o for o in TINY if not o.startswith("stages.operator.batch_size")] + [
        "stages.operator.scheduler=cosine", "stages.operator.warmup_steps_ratio=0.2"]
    seen: list = []

    def interrupt(m, ckpt):
        seen.append((m, ckpt))
        if m["global_epoch"] == 3:  # after operator epoch 1 of 3, trained with batch 3
            raise Stop

    with pytest.raises(Stop):
        train(load_config(base + ["stages.operator.batch_size=3"]), run_dir=tmp_path / "a", data=tiny, report=interrupt)
    new = load_config(base + ["stages.operator.batch_size=12"])
    resumed: list[dict] = []
    train(new, run_dir=tmp_path / "a", data=tiny, resume_from=seen[-1][1], report=lambda m, c: resumed.append(m))
    straight: list[dict] = []
    train(new, run_dir=tmp_path / "b", data=tiny, report=lambda m, c: straight.append(m))
    lr = {m["epoch"]: m["lr"] for m in straight if m.get("stage") == "operator"}
    ops = [m for m in resumed if m.get("stage") == "operator"]
    assert [m["epoch"] for m in ops] == [2, 3]
    for m in ops:  # the lr each epoch ends with
        assert m["lr"] == pytest.approx(lr[m["epoch"]], rel=1e-9), m["epoch"]

    from ups.train.schedules import build_scheduler
    from ups.train.trainer import realign_schedule

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    sched = build_scheduler(opt, 10, 0.0, "cosine")
    for _ in range(4):
        opt.step()
        sched.step()
    assert not realign_schedule(opt, sched, 4)  # a plain resume: nothing moves
    assert realign_schedule(opt, sched, 8) and sched.get_last_lr()[0] == pytest.approx(opt.param_groups[0]["lr"])
    assert opt.param_groups[0]["lr"] < 0.2  # near the end of the decay


CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                       reason="needs CUDA")])


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_nan_loss_stops_with_last_good_checkpoint(tiny, tmp_path, device):
    """A non-finite loss stops training before the step that would spread it: the saved weights are finite."""
    cfg = load_config(TINY + ["stages.autoencoder.optimizer.lr=1e30", "stages.autoencoder.grad_clip=0",
                              "stages.autoencoder.warmup_steps_ratio=0", f"training.device={device}"])
    with pytest.raises(TrainingDiverged, match=r"stages.autoencoder.optimizer.lr") as e:
        train(cfg, run_dir=tmp_path, data=tiny)
    state = read_checkpoint(e.value.checkpoint)
    assert state["stage"] == "autoencoder" and "diverged" in state
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_restart_from_last_good_starts_from_the_state_before_the_failing_epoch(tiny, tmp_path):
    """last_good held the weights (and Adam state) of the steps that blew up mid-epoch, with the completed epoch
    count, so a restart put the LR schedule back at the epoch's start but kept the blown-up weights: restarted
    with lr=1e-3 it diverged again at its first batch.  Now every part is the state the failing epoch started from."""
    stages = ["stages.operator.epochs=0", "stages.diff_residual.epochs=0", "stages.consistency_distill.epochs=0",
              "stages.autoencoder.epochs=4", "stages.autoencoder.grad_clip=0"]
    # 18 samples, batch 6: 3 steps an epoch; this lr with a long warmup diverges at the third batch, 2 steps in
    cfg = load_config(TINY + stages + ["stages.autoencoder.optimizer.lr=50", "stages.autoencoder.warmup_steps_ratio=0.9"])
    with pytest.raises(TrainingDiverged, match=r"epoch 1, batch 3") as e:
        train(cfg, run_dir=tmp_path / "run", data=tiny)
    state = read_checkpoint(e.value.checkpoint)
    steps = [int(s["step"]) for s in state["optimizer"].get("state", {}).values()]
    assert state["scheduler"]["last_epoch"] == state["epoch"] * 3 == 0 and set(steps) <= {0}
    assert state["ema"]["num_updates"] == 0
    fresh = train(load_config(TINY + stages + ["stages.autoencoder.epochs=0", "stages.operator.epochs=1",
                                               "stages.operator.optimizer.lr=1e-12"]), run_dir=tmp_path / "init",
                  data=tiny).model.state_dict()  # the autoencoder's initial weights (no autoencoder step taken)
    for k in ("encoder", "decoder"):
        names = [n for n in state["model"] if n.startswith(k + ".")]
        assert names and all(torch.equal(state["model"][n], fresh[n].cpu()) for n in names), k
    again = load_config(TINY + stages + ["stages.autoencoder.optimizer.lr=1e-3", "stages.autoencoder.warmup_steps_ratio=0.9"])
    res = train(again, run_dir=tmp_path / "run", data=tiny, resume_from=e.value.checkpoint)  # diverged at once before
    assert res.history[-1]["stage"] == "autoencoder" and res.history[-1]["epoch"] == 4


def test_a_divergence_after_a_checkpoint_restarts_from_that_checkpoint(tiny, tmp_path):
    """Once the run has written a checkpoint, last_good is that whole state (no copy of the state every epoch):
    here the autoencoder's last epoch, before an operator stage whose lr blows up in its first steps."""
    stages = ["stages.diff_residual.epochs=0", "stages.consistency_distill.epochs=0", "stages.autoencoder.epochs=2",
              "stages.operator.epochs=2", "stages.operator.grad_clip=0", "stages.operator.warmup_steps_ratio=0"]
    with pytest.raises(TrainingDiverged, match=r"stage 'operator' diverged at epoch 1") as e:
        train(load_config(TINY + stages + ["stages.operator.optimizer.lr=1e30"]), run_dir=tmp_path / "run", data=tiny)
    state = read_checkpoint(e.value.checkpoint)
    newest = read_checkpoint(tmp_path / "run" / "checkpoints" / "epoch_0002")  # the autoencoder's end
    assert (state["stage"], state["epoch"], state["global_epoch"]) == ("autoencoder", 2, 2) and "diverged" in state
    assert state["model"].keys() == newest["model"].keys()
    assert all(torch.equal(v, newest["model"][k]) for k, v in state["model"].items())
    assert state["wall_clock"] >= newest["wall_clock"]  # the seconds spent up to the divergence
    res = train(load_config(TINY + stages + ["stages.operator.optimizer.lr=1e-3"]), run_dir=tmp_path / "run",
                data=tiny, resume_from=e.value.checkpoint)
    assert [h["stage"] for h in res.history] == ["autoencoder"] * 2 + ["operator"] * 2


def test_eval_max_samples_0_trains_without_a_test_evaluation(tiny, tmp_path):
    """The config check reads eval.max_samples=0 as "no test evaluation"; the trainer evaluated every sample."""
    stages = ["stages.autoencoder.epochs=1", "stages.operator.epochs=0", "stages.diff_residual.epochs=0",
              "stages.consistency_distill.epochs=0"]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:  # training.num_threads=1 while it trains, the caller's 2 after (it was left at 1 for the whole process)
        res = train(load_config(TINY + stages + ["eval.max_samples=0"]), run_dir=tmp_path / "none", data=tiny)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert "nrmse" not in res.metrics and res.metrics["params"] > 0
    res = train(load_config(TINY + stages + ["eval.max_samples=1"]), run_dir=tmp_path / "one", data=tiny)
    assert res.metrics["nrmse"] is not None and res.metrics["n_samples"] == 1


def test_checkpoint_refused_on_mismatch_and_corruption(tiny, tmp_path):
    cfg = load_config(TINY + ["stages.operator.epochs=0", "stages.diff_residual.epochs=0",
                              "stages.consistency_distill.epochs=0", "stages.autoencoder.epochs=1"])
    res = train(cfg, run_dir=tmp_path / "run", data=tiny)
    other = load_config(TINY + ["preset=dim16"])
    with pytest.raises(CheckpointError, match=r"latent\.dim: checkpoint=8 requested=16"):
        load_checkpoint(res.checkpoint, cfg=other)
    with pytest.raises(CheckpointError, match="different model"):
        train(other, run_dir=tmp_path / "run2", data=tiny, resume_from=res.checkpoint)
    # a stochastic-depth rate shapes no weight: the checkpoint loads under another (a resume, a PBT exploit)
    model, _, _ = load_checkpoint(res.checkpoint, cfg=load_config(TINY + ["operator.drop_path=0.2"]))
    assert model is not None
    bad = tmp_path / "bad" / "checkpoint.pt"
    bad.parent.mkdir()
    bad.write_bytes(res.checkpoint.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="truncated or corrupt.*Fix"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere.pt")
    # a Tune trial's folder stands for its newest checkpoint_N (ups eval checkpoint=<trial folder> was refused)
    trial = tmp_path / "trial_x"
    for n, data in ((2, res.checkpoint.read_bytes()), (10, res.checkpoint.read_bytes()), (11, None)):
        (trial / f"checkpoint_{n:06d}").mkdir(parents=True)
        if data is not None:
            (trial / f"checkpoint_{n:06d}" / "checkpoint.pt").write_bytes(data)
    assert resolve_path(trial) == trial / "checkpoint_000010" / "checkpoint.pt"  # 11: a write cut short
    load_checkpoint(trial)
    # what a killed write, a foreign file or a diverged save leaves: each refused with its own reason
    state = torch.load(res.checkpoint, map_location="cpu", weights_only=True)
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("hello, not a checkpoint\n")
    torch.save({"obj": types.SimpleNamespace(a=1)}, tmp_path / "objects.pt")
    torch.save({**state, "model": {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                   for k, v in state["model"].items()}}, tmp_path / "nan.pt")
    torch.save({**state, "grid_size": "abc"}, tmp_path / "grid.pt")
    one = next(k for k, v in state["model"].items() if v.is_floating_point() and v.numel() > 1)
    torch.save({**state, "model": {**state["model"], one: state["model"][one].flatten().index_fill(
        0, torch.tensor([0]), float("inf")).view_as(state["model"][one])}}, tmp_path / "inf.pt")  # one value is enough
    for name, why in (("empty", "is empty \\(0 bytes"), ("text", "truncated or corrupt"),
                      ("objects", r"holds Python objects \(types.SimpleNamespace\)"),
                      ("nan", "NaN/Inf weights"), ("inf", "NaN/Inf weights"), ("grid", "do not fit the model")):
        with pytest.raises(CheckpointError, match=why) as e:
            load_checkpoint(tmp_path / f"{name}.pt")
        assert f"{name}.pt" in str(e.value) and "Fix:" in str(e.value) and "\x1b[" not in str(e.value)
    # an edited tensor and a foreign key: the message names them (torch's own first line does not)
    first = next(k for k, v in state["model"].items() if v.dim() >= 1)
    edited = {**state["model"], first: torch.zeros(3, 5), "extra.weight": torch.zeros(1)}
    torch.save({**state, "model": edited}, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="do not fit the model") as e:
        load_checkpoint(tmp_path / "shape.pt")
    assert f"1 shape differs: {first}: checkpoint [3, 5], model {list(state['model'][first].shape)}" in str(e.value)
    assert "1 unexpected: extra.weight" in str(e.value) and "Fix:" in str(e.value)


def test_the_model_diff_ignores_only_weight_free_keys_and_names_one_sided_ones(tmp_path):
    """The drop_path case above ran at TINY's own 0.2 (no difference to ignore). A stochastic-depth rate of its own
    loads; a model key only one side has (a setting added since) and another grid are refused; a file of another
    format, or one without the required keys, is refused before any model is built."""
    from ups.train.checkpoint import FORMAT, REQUIRED, check_compatible, model_config_diff

    stored = {"latent": {"dim": 8}, "operator": {"drop_path": 0.0, "hidden_dim": 16}, "training": {"seed": 1}}
    assert model_config_diff(stored, {**stored, "operator": {"drop_path": 0.3, "hidden_dim": 16},
                                      "training": {"seed": 2}}) == []
    one_sided = {**stored, "operator": {**stored["operator"], "depth": 2}}
    assert model_config_diff(stored, one_sided) == ["operator.depth: checkpoint='<absent>' requested=2"]
    assert model_config_diff({**stored, "diffusion": {"steps": 4}}, {**stored, "diffusion": {"steps": 8}}) == [
        "diffusion.steps: checkpoint=4 requested=8"]
    state = {"config": stored, "grid_size": 32, "path": "x.pt"}
    check_compatible(state, stored, grid_size=32)
    with pytest.raises(CheckpointError, match=r"grid_size: checkpoint=32 requested=64"):
        check_compatible(state, stored, grid_size=64)
    torch.save({"format": "other-v0", "config": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"is not a UPS checkpoint \(format 'other-v0', expected"):
        read_checkpoint(tmp_path / "other.pt")
    torch.save({"format": FORMAT, **{k: 0 for k in REQUIRED if k not in ("format", "global_epoch")}},
               tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"lacks keys \['global_epoch'\]"):
        read_checkpoint(tmp_path / "old.pt")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_training_runs(tiny, tmp_path):
    cfg = load_config(TINY + ["training.device=cuda", "training.amp=bf16", "stages.consistency_distill.epochs=1"])
    res = train(cfg, run_dir=tmp_path, data=tiny)
    assert res.metrics["done"] and next(res.model.parameters()).is_cuda


def test_a_resumed_stage_keeps_the_time_it_already_spent(tiny, tmp_path):
    """stages.X.time_budget_s is a budget of the stage, not of each process that trains it: a checkpoint
    records the stage's elapsed time, and a resume that finds it spent ends the stage at once."""
    cfg = load_config([*TINY, "stages.operator.time_budget_s=3600"])
    seen: list = []

    def interrupt(m, ckpt):
        seen.append((m, ckpt))
        if m["stage"] == "operator":
            raise Stop

    with pytest.raises(Stop):
        train(cfg, run_dir=tmp_path / "cut", data=tiny, report=interrupt)
    ckpt = Path(seen[-1][1]) / "checkpoint.pt" if Path(seen[-1][1]).is_dir() else Path(seen[-1][1])
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["stage"] == "operator" and 0 < state["stage_elapsed_s"] < 3600
    state["stage_elapsed_s"] = 3600.0  # as if the earlier processes had used up the stage's hour
    torch.save(state, ckpt)
    resumed: list[dict] = []
    train(cfg, run_dir=tmp_path / "cut", data=tiny, resume_from=ckpt, report=lambda m, c: resumed.append(m))
    operator = [m for m in resumed if m.get("stage") == "operator"]
    assert len(operator) == 1 and operator[0].get("budget_exhausted"), operator  # not a fresh hour


def test_a_resume_from_a_total_time_budget_stop_trains_no_further_stage(tiny, tmp_path):
    """training.time_budget_s ends the run at the stage it runs out in; the checkpoint of that stop says so, and a
    run resumed from it ends as the uninterrupted one did (it trained the next stage's first batch and more)."""
    cfg = load_config([*TINY, "training.time_budget_s=0.001"])
    full_hist: list[dict] = []
    full = train(cfg, run_dir=tmp_path / "full", data=tiny, report=lambda m, c: full_hist.append(m))
    assert [m["stage"] for m in full_hist] == ["autoencoder", "done"]
    seen: list = []

    def interrupt(m, ckpt):
        seen.append(ckpt)
        if m.get("budget_exhausted") and not m.get("done"):
            raise Stop

    with pytest.raises(Stop):
        train(cfg, run_dir=tmp_path / "cut", data=tiny, report=interrupt)
    resumed: list[dict] = []
    res = train(cfg, run_dir=tmp_path / "cut", data=tiny, resume_from=seen[-1], report=lambda m, c: resumed.append(m))
    assert [m["stage"] for m in resumed] == ["done"] and resumed[-1]["budget_exhausted"], resumed
    a, b = _final_state(full.model), _final_state(res.model)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resuming from the budget stop"


def test_gradient_accumulation_averages_over_the_batches_each_step_has(tiny, tmp_path, monkeypatch):
    """18 samples, batch 6, accum_steps 2: 3 batches, so the epoch's second optimizer step has one batch. Each
    step's gradient is the mean over its own batches (it was halved: the lone batch divided by accum_steps)."""
    import ups.train.stages as stages

    monkeypatch.setitem(stages.LOSSES, "operator",
                        lambda ctx, idx, g: sum(p.sum() for p in ctx.model.operator.parameters()))  # gradient 1
    grads: list[float] = []
    step = torch.optim.AdamW.step

    def record(self, *a, **k):
        grads.append(float(self.param_groups[0]["params"][0].grad.flatten()[0]))
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", record)
    cfg = load_config([*TINY, "stages.autoencoder.epochs=0", "stages.diff_residual.epochs=0",
                       "stages.consistency_distill.epochs=0", "stages.operator.epochs=1",
                       "stages.operator.accum_steps=2", "stages.operator.grad_clip=0"])
    train(cfg, run_dir=tmp_path, data=tiny)
    assert grads == [1.0, 1.0]


def test_a_resume_with_a_new_lr_applies_the_stage_clock_to_its_first_step(tiny, tmp_path, monkeypatch):
    """With stages.X.time_budget_s the cosine decay follows the stage's clock. A resume that re-applies the
    schedule (PBT's new lr or batch size) computed the lr before the clock was restored: its first step ran at
    the step-count lr (0.00075 here, 30x the clock's)."""
    base = [*TINY, "stages.operator.time_budget_s=1000", "stages.diff_residual.epochs=0",
            "stages.consistency_distill.epochs=0"]
    seen: list = []

    def interrupt(m, ckpt):
        seen.append(ckpt)
        if m["stage"] == "operator":
            raise Stop

    with pytest.raises(Stop):
        train(load_config(base), run_dir=tmp_path, data=tiny, report=interrupt)
    ckpt = Path(seen[-1]) / "checkpoint.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["stage_elapsed_s"] = 900.0  # 90 % of the stage's budget spent
    torch.save(state, ckpt)
    lrs: list[float] = []
    step = torch.optim.AdamW.step

    def record(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", record)
    train(load_config(base + ["stages.operator.optimizer.lr=1e-3"]), run_dir=tmp_path, data=tiny, resume_from=ckpt)
    assert lrs[0] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.9)), rel=1e-3), lrs[:3]


def test_more_context_frames_encode_the_same_windows_with_or_without_the_latent_cache() -> None:
    """encoder.context_frames=3: without the latent cache the operator stages (and the autoencoder) encoded one
    frame repeated 3 times, while the cache and inference give the encoder the 3 most recent frames."""
    from ups.config import load_config
    from ups.models.ups_model import build_model
    from ups.train.latent_cache import encode_trajectories
    from ups.train.stages import StageContext

    torch.manual_seed(0)
    cfg = load_config(["preset=dim8", "encoder.context_frames=3"])
    m = build_model(cfg, grid_size=32).eval()
    u = torch.randn(4, 10, 32)  # (M, T, X)
    idx, t0 = torch.arange(4), torch.tensor([0, 1, 5, 8])  # the first two need frame 0 repeated before the start
    plain = StageContext(model=m, cfg=cfg, train=u, device=torch.device("cpu"), latents=None)
    cached = StageContext(model=m, cfg=cfg, train=u, device=torch.device("cpu"), latents=encode_trajectories(m.encoder, u))
    a, b = plain.latent_window(idx, t0, 2), cached.latent_window(idx, t0, 2)  # (B, 2, N, D)
    assert torch.allclose(a, b, atol=1e-6)
    inference = m.encode(u[idx[:, None], (t0[:, None] + torch.arange(-2, 1)).clamp(min=0)])  # what eval feeds it
    assert torch.allclose(a[:, 0], inference, atol=1e-6)


def test_an_ema_state_of_other_shapes_is_refused() -> None:
    """copy_ broadcast a (1, 3) shadow into the (4, 3) one: an edited or foreign checkpoint resumed silently."""
    from ups.train.ema import EMA

    ema = EMA([torch.nn.Parameter(torch.zeros(4, 3))], 0.9)
    with pytest.raises(ValueError, match=r"shadow tensor 0 has shape \(1, 3\), the parameter \(4, 3\)"):
        ema.load_state_dict({"decay": 0.9, "num_updates": 5, "shadow": [torch.ones(1, 3)]})
    ema.load_state_dict({"decay": 0.9, "num_updates": 5, "shadow": [torch.ones(4, 3)]})
    assert ema.num_updates == 5 and float(ema.shadow[0].sum()) == 12.0


def test_a_resume_from_a_finished_run_trains_only_stages_it_never_trained(tiny, tmp_path):
    """--resume runs/<id> of a finished run takes its final checkpoint, past the end of every stage: more operator
    epochs trained nothing and rewrote the run's metrics as done. A stage the run never trained now trains on the
    finished model; more epochs of a stage it trained are refused, naming the checkpoints that can go on."""
    cfg = load_config([*TINY, "stages.diff_residual.epochs=0", "stages.consistency_distill.epochs=0"])
    first = train(cfg, run_dir=tmp_path / "run", data=tiny)
    again: list[dict] = []
    train(cfg, run_dir=tmp_path / "run", data=tiny, resume_from=tmp_path / "run", report=lambda m, c: again.append(m))
    assert [m["stage"] for m in again] == ["done"]  # a plain resume: only the final evaluation
    with pytest.raises(CheckpointError, match=r"final one of a finished run, past the end of its last stage "
                                              r"\(operator\), and stages.operator.epochs=5 \(the run: 3, trained 3\) "
                                              r"asks for more epochs of a stage it has finished\. Fix: start a new run.*"
                                              r"\(kept: .*epoch_0005"):
        train(load_config([*TINY, "stages.operator.epochs=5", "stages.diff_residual.epochs=0",
                           "stages.consistency_distill.epochs=0"]), run_dir=tmp_path / "run", data=tiny,
              resume_from=first.checkpoint)
    more: list[dict] = []
    res = train(load_config([*TINY, "stages.consistency_distill.epochs=0"]), run_dir=tmp_path / "run", data=tiny,
                resume_from=first.checkpoint, report=lambda m, c: more.append(m))
    assert [m["stage"] for m in more] == ["diff_residual", "done"] and more[0]["global_epoch"] == 6
    before, after = _final_state(first.model), _final_state(res.model)
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"diffusion", "residual_std"}, changed  # the finished encoder and operator are unchanged
    # a stage its own time budget ended short of its epochs: a plain resume is not refused as "more training"
    cut_cfg = load_config([*TINY, "stages.operator.time_budget_s=0.001", "stages.diff_residual.epochs=0",
                           "stages.consistency_distill.epochs=0"])
    cut = train(cut_cfg, run_dir=tmp_path / "cut", data=tiny)
    assert [m["epoch"] for m in cut.history if m["stage"] == "operator"] == [1]
    again.clear()
    train(cut_cfg, run_dir=tmp_path / "cut", data=tiny, resume_from=cut.checkpoint, report=lambda m, c: again.append(m))
    assert [m["stage"] for m in again] == ["done"]
    with pytest.raises(CheckpointError, match=r"stages.operator.epochs=4 \(the run: 3, trained 1\)"):  # more: refused
        train(load_config([*TINY, "stages.operator.time_budget_s=0.001", "stages.operator.epochs=4",
                           "stages.diff_residual.epochs=0", "stages.consistency_distill.epochs=0"]),
              run_dir=tmp_path / "cut", data=tiny, resume_from=cut.checkpoint)
