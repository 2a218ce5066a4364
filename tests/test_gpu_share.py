"""A trial's GPU memory: reported by the trainer on CUDA, kept on the leaderboard, and checked against the
share of the GPU the trial asked for (Ray's fractional GPUs share out a count, not memory)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from ups.config import load_config, to_dict
from ups.train.trainer import gpu_memory
from ups.tune.gpu_share import fraction_for, gpu_share_warning, trials_per_gpu

REPO = Path(__file__).resolve().parents[1]
A10G = 22_731.0  # MiB, what torch reports for an A10G


def rows(*peaks: float | None, total: float | None = A10G) -> pd.DataFrame:
    return pd.DataFrame({"trial_id": [f"t{i}" for i in range(len(peaks))], "gpu_mem_peak_mib": list(peaks),
                         "gpu_mem_total_mib": [total] * len(peaks)})


def test_a_trial_larger_than_its_share_is_named_with_the_fraction_that_fits() -> None:
    # 4 per GPU gives each 5683 MiB; t1 needs 6800 + the context allowance, 3 of those fit in 22731 MiB
    msg = gpu_share_warning(rows(1200.0, 6800.0, 3000.0), 0.25, context_mib=600.0)
    assert msg is not None and "trial t1" in msg and "7400 MiB" in msg and "resources.gpu=0.25 share (5683 MiB)" in msg
    assert msg.endswith("Fix: resources.gpu=0.3333 (3 per GPU of this size)"), msg
    # the same trials at 2 per GPU fit
    assert gpu_share_warning(rows(1200.0, 6800.0, 3000.0), 0.5, context_mib=600.0) is None
    # one needing most of the GPU: a GPU of its own
    msg = gpu_share_warning(rows(15_000.0), 0.5, context_mib=600.0)
    assert msg is not None and msg.endswith("Fix: resources.gpu=1 (a GPU per trial)")


def test_no_warning_without_gpu_figures_or_without_sharing() -> None:
    assert gpu_share_warning(rows(None, None, total=None), 0.25) is None  # CPU trials: no figures
    assert gpu_share_warning(rows(20_000.0), 1.0) is None  # a whole GPU each: CUDA's own OOM says more
    assert gpu_share_warning(rows(20_000.0), 0.0) is None  # CPU sweep
    assert gpu_share_warning(pd.DataFrame(), 0.25) is None  # an empty leaderboard (no columns)
    assert gpu_share_warning(rows(1000.0), 0.25, context_mib=600.0) is None  # 1600 of 5683 MiB


@pytest.mark.parametrize("need, total, k, frac", [(7600, A10G, 2, 0.5), (5000, A10G, 4, 0.25),
                                                   (7000, 21_000, 3, 0.3333), (30_000, A10G, 1, 1.0)])
def test_trials_per_gpu_and_the_fraction_that_packs_them(need, total, k, frac) -> None:
    assert trials_per_gpu(need, total) == k and fraction_for(k) == frac
    assert k * fraction_for(k) <= 1.0  # Ray fits k of them on one GPU


def test_the_leaderboard_row_keeps_the_trials_gpu_memory() -> None:
    from ups.tune.results import RowContext, trial_row
    from ups.tune.space import load_space

    base = load_config(["preset=dim8"])
    space = load_space(REPO / "search_spaces" / "round_a.yaml", base)
    ctx = RowContext(round="round_a", experiment="round_a-x", space=space, base=to_dict(base),
                     reference_point=space.reference_point(base), gpu_per_trial=0.25)
    result = {"val_nrmse": 0.1, "training_iteration": 3, "gpu_mem_peak_mib": 812.5, "gpu_mem_total_mib": A10G}
    row = trial_row(ctx, "t1", space.reference_point(base), result, gate_reason=None)
    assert row["gpu_mem_peak_mib"] == 812.5 and row["gpu_mem_total_mib"] == A10G
    cpu = trial_row(ctx, "t2", space.reference_point(base), {"val_nrmse": 0.1}, gate_reason=None)
    assert cpu["gpu_mem_peak_mib"] is None and cpu["gpu_mem_total_mib"] is None


def test_the_users_run_label_and_tags_reach_every_row() -> None:
    """run.label=… run.tags=[…] on a sweep's command line were accepted and kept only in config_json."""
    from ups.tune.results import RowContext, row_tags, trial_row
    from ups.tune.space import load_space

    base = load_config(["preset=dim8", "run.label=wd-study", "run.tags=[wd,'a;b']"])
    space = load_space(REPO / "search_spaces" / "round_a.yaml", base)
    ctx = RowContext(round="round_a", experiment="round_a-x", space=space, base=to_dict(base),
                     reference_point=space.reference_point(base), tags=["profile:smoke", *row_tags(base)],
                     label=base.run.label)
    ref = trial_row(ctx, "t1", space.reference_point(base), {"val_nrmse": 0.1}, gate_reason=None)
    assert ref["label"] == "wd-study: reference" and ref["tags"] == "profile:smoke;wd;a,b;reference"
    other = dict(space.reference_point(base), **{"stages.operator.optimizer.lr": 1e-3})
    row = trial_row(ctx, "t2", other, {"val_nrmse": 0.1}, gate_reason=None)
    assert row["label"].startswith("wd-study: ") and "lr=" in row["label"] and row["tags"] == "profile:smoke;wd;a,b"


def test_gpu_hours_price_each_report_at_the_share_the_trial_ran_it_on() -> None:
    """resources.gpu may change on a resume: a trial that ran 200 s on a whole GPU, then 200 s on a quarter after
    resources.gpu=0.25 resume=true, used 250 GPU-seconds; its row priced all 400 s at the resuming command's 0.25."""
    from types import SimpleNamespace

    from ups.tune.gates import GateLimits
    from ups.tune.restore import trial_compute_s
    from ups.tune.results import LeaderboardCallback, RowContext, trial_row
    from ups.tune.space import load_space

    base = load_config(["preset=dim8"])
    space = load_space(REPO / "search_spaces" / "round_a.yaml", base)
    ctx = RowContext(round="round_a", experiment="round_a-x", space=space, base=to_dict(base),
                     reference_point=space.reference_point(base), gpu_per_trial=0.25, cost_per_gpu_hour=3.6)
    before = [{"time_this_iter_s": 100.0, "gpu_share": 1.0}] * 2  # the first driver's reports (result.json)
    after = [{"time_this_iter_s": 100.0, "gpu_share": 0.25}] * 2  # the resumed driver's
    restored = [SimpleNamespace(path="/x/trial_t1", metrics=before[-1]),
                SimpleNamespace(path="/x/trial_t2", metrics={"time_total_s": 50.0})]  # t2: result.json unreadable
    secs, gpu = trial_compute_s(restored, {"t1": before}, ctx.gpu_per_trial)
    assert secs == {"t1": 200.0, "t2": 50.0} and gpu == {"t1": 200.0, "t2": 12.5}
    cb = LeaderboardCallback(Path("unused.csv"), ctx, GateLimits())
    cb.trial_s, cb.trial_gpu_s = secs, gpu
    for r in after:
        cb.on_trial_result(0, [], SimpleNamespace(trial_id="t1"), r)
    cb.on_trial_result(0, [], SimpleNamespace(trial_id="t3"), {"time_this_iter_s": 40.0})  # no share reported
    assert cb.trial_s["t1"] == 400.0 and cb.trial_gpu_s == {"t1": 250.0, "t2": 12.5, "t3": 10.0}
    row = trial_row(ctx, "t1", space.reference_point(base), after[-1], gate_reason=None,
                    compute_s=cb.trial_s["t1"], gpu_s=cb.trial_gpu_s["t1"])
    assert row["wall_clock"] == 400.0 and row["gpu_hours"] == pytest.approx(250 / 3600, abs=1e-5)
    assert row["est_cost"] == pytest.approx(0.25, abs=1e-4)  # 250 GPU-s at $3.60 per GPU-hour
    # without GPU-seconds (a caller that has none): the seconds at the sweep's resources.gpu, as before
    old = trial_row(ctx, "t1", space.reference_point(base), after[-1], gate_reason=None, compute_s=400.0)
    assert old["gpu_hours"] == pytest.approx(100 / 3600, abs=1e-5)


def test_the_leaderboard_row_prices_the_trials_gpu_share_and_keeps_both_nrmses() -> None:
    """gpu_hours = trial-seconds × its GPU fraction / 3600 and est_cost = gpu_hours × $/GPU-hour; the final report's
    nrmse and nrmse_ttc land in their own columns."""
    from ups.tune.results import RowContext, trial_row
    from ups.tune.space import load_space

    base = load_config(["preset=dim8"])
    space = load_space(REPO / "search_spaces" / "round_a.yaml", base)
    ctx = RowContext(round="round_a", experiment="round_a-x", space=space, base=to_dict(base),
                     reference_point=space.reference_point(base), gpu_per_trial=0.25, cost_per_gpu_hour=4.0)
    final = {"training_iteration": 5, "time_total_s": 9000.0, "final": True, "nrmse": 0.1, "nrmse_ttc": 0.08}
    row = trial_row(ctx, "t1", space.reference_point(base), final, gate_reason=None, compute_s=7200.0)
    assert row["wall_clock"] == 7200.0 and row["gpu_hours"] == pytest.approx(0.5)
    assert row["est_cost"] == pytest.approx(2.0)  # 0.5 GPU-hours × $4
    assert row["nrmse"] == 0.1 and row["nrmse_ttc"] == 0.08
    no_share = trial_row(ctx, "t2", space.reference_point(base), {"time_total_s": 3600.0}, gate_reason=None)
    assert no_share["gpu_hours"] == pytest.approx(0.25) and no_share["est_cost"] == pytest.approx(1.0)


def test_the_trainer_reports_gpu_memory_only_on_cuda() -> None:
    assert gpu_memory(torch.device("cpu")) == {}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_trainer_reports_its_peak_on_cuda(tmp_path) -> None:
    """The peak is the run's own: a second, smaller run in the same process (a reused Ray worker) does not
    report the first one's."""
    from ups.data.protocol import load_protocol
    from ups.train.trainer import train

    over = ["data.n=24", "data.resolution=128", "stages.autoencoder.epochs=1", "stages.operator.epochs=1",
            "stages.diff_residual.epochs=0", "stages.consistency_distill.epochs=0", "training.device=cuda",
            "eval.max_samples=4", "ttc.enabled=false"]
    big_cfg, small_cfg = load_config(["preset=dim64", *over]), load_config(["preset=dim8", *over])
    data = load_protocol(small_cfg.data)
    big = train(big_cfg, run_dir=tmp_path / "big", data=data).metrics
    small = train(small_cfg, run_dir=tmp_path / "small", data=data).metrics
    assert 0 < small["gpu_mem_peak_mib"] < big["gpu_mem_peak_mib"] < big["gpu_mem_total_mib"], (small, big)


def test_the_report_table_shows_gpu_memory_only_when_recorded() -> None:
    from ups.reports.html import TABLE_COLUMNS, _rows_html, _table_csv, table_columns

    lb = pd.DataFrame([{**{c: None for c in TABLE_COLUMNS}, "run_id": "r-t1", "kind": "trial", "status": "completed",
                        "nrmse": 0.1, "gpu_mem_peak_mib": None, "gpu_mem_total_mib": None}])
    assert table_columns(lb) == TABLE_COLUMNS and "gpu_mem_peak_mib" not in _table_csv(lb)  # a CPU sweep
    lb["gpu_mem_peak_mib"] = [3570.0]
    cols = table_columns(lb)
    assert cols[cols.index("est_cost") + 1] == "gpu_mem_peak_mib" and "gpu_mem_peak_mib" in _table_csv(lb)
    assert 'data-v="3570.0">3570</td>' in _rows_html(lb, None)
    # val_nrmse, what the promotion ranks on (the report's header says "by val nRMSE"), is a column; val_nrmse_ttc
    # beside it when a trial has one (a sweep searching ttc.* keys ranks on that)
    assert cols[cols.index("status") + 1] == "val_nrmse" and "val_nrmse_ttc" not in cols
    lb["val_nrmse"], lb["val_nrmse_ttc"] = [0.0833], [0.0811]
    cols = table_columns(lb)
    assert cols[cols.index("val_nrmse") + 1] == "val_nrmse_ttc" and 'data-v="0.0833">0.0833</td>' in _rows_html(lb, None)


def test_a_gpu_share_that_torch_cannot_use_is_refused_not_trained_on_the_cpu() -> None:
    """A trial given resources.gpu=0.25 on a node whose torch sees no CUDA (a CPU-only torch on a GPU worker, a
    node started with a logical --num-gpus) trained on the CPU without a word, and its row priced the seconds as
    GPU-hours. ``ups.tune.trainable.ups_trial`` now raises this text before any work."""
    from ups.tune.gpu_share import no_cuda_for_share

    why = no_cuda_for_share(0.25, "auto", cuda_available=False, where="node 10.0.1.7 (torch 2.13.0+cpu)")
    assert why is not None and "resources.gpu=0.25" in why and "node 10.0.1.7 (torch 2.13.0+cpu)" in why
    assert "sees no CUDA device" in why and "Fix: a CUDA build of torch" in why and "training.device=cpu" in why
    assert no_cuda_for_share(0.25, "cuda", cuda_available=False) is not None
    assert no_cuda_for_share(0.25, "cpu", cuda_available=False) is None  # asked for: held share, CPU training
    assert no_cuda_for_share(0.0, "auto", cuda_available=False) is None  # a CPU trial
    assert no_cuda_for_share(0.25, "auto", cuda_available=True) is None
    # on this machine, the check the trainable makes
    assert (no_cuda_for_share(1.0, "auto", cuda_available=torch.cuda.is_available()) is None) == torch.cuda.is_available()


def test_restored_reports_without_a_gpu_share_are_priced_at_the_resuming_commands_share() -> None:
    """A sweep started before trials reported their GPU share: each saved report's seconds at ``resources.gpu``."""
    from types import SimpleNamespace

    from ups.tune.restore import trial_compute_s

    restored = [SimpleNamespace(path="/x/trial_t1", metrics={})]
    secs, gpu = trial_compute_s(restored, {"t1": [{"time_this_iter_s": 100.0}] * 3}, 0.5)
    assert secs == {"t1": 300.0} and gpu == {"t1": 150.0}
