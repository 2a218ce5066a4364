"""The search-efficiency benchmark's replay of ASHA's rung (benchmarks/search_efficiency.py): same stop
decisions as Ray's own ASHA bracket, and the metric's baseline for an equally good searcher."""
from __future__ import annotations

import math
import random
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests.fixtures.modules import benchmark_module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return benchmark_module("search_efficiency")


def test_replay_stops_the_trials_ray_asha_stops(bench: ModuleType) -> None:
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.schedulers.async_hyperband import _Bracket

    rng = random.Random(0)
    for rf in (2.0, 3.0, 4.0):
        trials = [(list(range(1, 13)), [rng.uniform(0.05, 1.0) for _ in range(12)], [1.0] * 12) for _ in range(40)]
        bracket = _Bracket(min_t=3, max_t=12, reduction_factor=rf, s=0)  # rungs at 3·rf^k ≤ 12
        rungs = sorted(m for m, _ in bracket._rungs)
        ray_lengths = []
        for i, (its, vals, _) in enumerate(trials):
            trial = SimpleNamespace(trial_id=str(i))
            n = len(its)
            for k, (it, v) in enumerate(zip(its, vals)):
                if bracket.on_result(trial, it, -v) == TrialScheduler.STOP:  # mode=min: Ray negates
                    n = k + 1
                    break
            ray_lengths.append(n)
        replay = bench.replay(trials, [int(r) for r in rungs], rf)
        # the replay charges 1 per report, so its compute after each trial is the reports run so far
        spent = sum(ray_lengths)
        assert replay[-1][0] == spent, (rf, rungs)
        assert any(n < 12 for n in ray_lengths) and any(n == 12 for n in ray_lengths)


def test_an_equally_good_searcher_scores_below_one(bench: ModuleType) -> None:
    """Random search reaches its own best on average half way through its budget; an independent
    searcher drawing from the same distribution must beat the minimum of someone else's draws (half the
    time not within the budget, which then counts whole). The benchmark's ratio for an equally good
    searcher (the no-rung control) is therefore about 0.8, not 1. A rung that ranks trials as their end
    does raises it; one that ranks them upside down stops the good ones and lowers it."""
    rng = random.Random(1)
    finals = [rng.uniform(0.05, 1.0) for _ in range(240)]
    ranked = [([1, 2, 3], [f * 3, f * 2, f], [1.0, 1.0, 1.0]) for f in finals]
    inverted = [([1, 2, 3], [1 / f, f * 2, f], [1.0, 1.0, 1.0]) for f in finals]
    good = bench.asha_replay(ranked, n_random=24, rungs=[1], rf=3.0, reps=300, seed=0)
    bad = bench.asha_replay(inverted, n_random=24, rungs=[1], rf=3.0, reps=300, seed=0)
    assert good["no_rung"] == bad["no_rung"]  # the control never looks at the rung
    assert 0.6 < good["no_rung"]["ratio_pooled"] < 0.95, good
    assert good["asha_rung"]["ratio_pooled"] > 1.1 * good["no_rung"]["ratio_pooled"], good
    assert bad["asha_rung"]["ratio_pooled"] < 0.8 * bad["no_rung"]["ratio_pooled"], bad


def test_fixed_targets_score_an_equally_good_searcher_at_one(bench: ModuleType) -> None:
    """Read against a fixed target (a quantile of all random trials) instead of random search's own best,
    both searches chase the same value: the control is about 1x, and a rung that ranks well still adds."""
    rng = random.Random(1)
    finals = [rng.uniform(0.05, 1.0) for _ in range(240)]
    ranked = [([1, 2, 3], [f * 3, f * 2, f], [1.0, 1.0, 1.0]) for f in finals]
    target = sorted(finals)[12]  # the 5 % quantile
    out = bench.asha_replay(ranked, n_random=24, rungs=[1], rf=3.0, reps=300, seed=0, fixed_targets={"q0.05": target})
    fixed = out["at_fixed_targets"]["q0.05"]
    assert 0.85 < fixed["no_rung"] < 1.15, out
    assert fixed["asha_rung"] > 1.1 * fixed["no_rung"], out
    assert out["no_rung"] == bench.asha_replay(ranked, n_random=24, rungs=[1], rf=3.0, reps=300, seed=0)["no_rung"]


def test_quantile_ratios_charge_the_budget_when_never_reached(bench: ModuleType) -> None:
    finals = [0.1 + 0.01 * i for i in range(101)]  # quantiles: 1 % → 0.11, 10 % → 0.20
    per_seed = [{"budget_trial_s": 10.0}, {"budget_trial_s": 10.0}]
    curves = [{"random": [(2.0, 0.5), (6.0, 0.11)], "asha_tpe": [(1.0, 0.3), (2.0, 0.1)]},  # 6 vs 2 for both targets
              {"random": [(4.0, 0.2), (9.0, 0.11)], "asha_tpe": [(5.0, 0.15)]}]  # 9 vs never (10); 4 vs 5
    out = bench.quantile_ratios(per_seed, curves, finals, qs=(0.01, 0.10))
    assert out["q0.01"] == {"target": 0.11, "ratio_pooled": round((6 + 9) / (2 + 10), 2)}
    assert out["q0.10"] == {"target": 0.2, "ratio_pooled": round((6 + 4) / (2 + 5), 2)}


def test_pooled_ratio_interval_resamples_the_seeds(bench: ModuleType) -> None:
    """The 5–95 % range of the pooled ratio over resampled seeds: a point where every seed reads the same,
    around the pooled figure otherwise; a seed never reached counts with its whole budget, as pooled."""
    same = [{"compute_random_to_its_best_s": 300.0, "compute_asha_to_random_best_s": 100.0, "budget_trial_s": 900.0}] * 5
    assert bench.pooled_ratio_interval(same) == [3.0, 3.0] and bench.pooled_ratio(same) == 3.0
    mixed = [{"compute_random_to_its_best_s": need, "compute_asha_to_random_best_s": asha, "budget_trial_s": 900.0}
             for need, asha in ((600.0, 100.0), (100.0, 300.0), (450.0, None), (500.0, 250.0), (200.0, 50.0))]
    low, high = bench.pooled_ratio_interval(mixed)
    assert low < bench.pooled_ratio(mixed) < high
    assert low >= 450.0 / 900.0 and high <= 600.0 / 100.0  # within the per-seed extremes (never reached: budget)


def test_mean_curve_speedup_reads_the_seed_mean_curves(bench: ModuleType) -> None:
    per_seed = [{"budget_trial_s": 10.0}, {"budget_trial_s": 12.0}]  # the common axis ends at 10
    random_curves = [[(5.0, 0.5), (10.0, 0.2)], [(5.0, 0.4), (10.0, 0.2), (12.0, 0.01)]]  # mean 0.2 at 10
    asha = [[(2.0, 0.3), (4.0, 0.2)], [(2.0, 0.1)]]  # mean 0.2 from t = 2 on
    curves = [{"random": r, "asha_tpe": a} for r, a in zip(random_curves, asha)]
    out = bench.mean_curve_speedup(per_seed, curves, boot=50)
    assert out["random_mean_final"] == 0.2 and out["budget_trial_s"] == 10.0
    assert out["speedup"] == pytest.approx(5.0, rel=0.01)
    lo, hi = out["interval_90"]
    assert lo <= out["speedup"] <= hi
    never = [{"random": r, "asha_tpe": [(1.0, 0.9)]} for r in random_curves]
    assert bench.mean_curve_speedup(per_seed, never, boot=10)["speedup"] == 1.0


# ------------------------------------------------------------------ benchmarks/search_surrogate.py
@pytest.fixture(scope="module")
def surrogate() -> ModuleType:
    return benchmark_module("search_surrogate")


LR, BATCH = "stages.operator.optimizer.lr", "stages.operator.batch_size"


@pytest.fixture
def two_knob_space(tmp_path: Path):
    from ups.tune.space import load_space

    path = tmp_path / "space.yaml"
    path.write_text(f"description: two knobs\nparams:\n  {LR}: {{dist: loguniform, low: 1.0e-5, high: 3.0e-2}}\n"
                    f"  {BATCH}: {{dist: choice, values: [8, 16, 32, 64]}}\n")
    return path, load_space(path)


def recorded(surrogate: ModuleType, structured: bool, n: int = 300, seed: int = 0) -> list:
    """Full-length synthetic trials shaped like the smoke profile's (10 cached autoencoder epochs at no
    cost, then 33 one-second reports, each trial's curve a multiple of its final value): the final value a
    smooth function of the config plus a little noise (``structured``), or pure noise."""
    rng = random.Random(seed)
    out = []
    for j in range(n):
        lr, b = math.exp(rng.uniform(math.log(1e-5), math.log(3e-2))), rng.choice([8, 16, 32, 64])
        final = (0.05 + 0.1 * (math.log10(lr) + 2.5) ** 2 + 0.03 * (b != 8) + rng.gauss(0, 0.003) if structured
                 else 0.05 + rng.uniform(0.0, 0.3))
        its = list(range(1, 44))
        out.append(surrogate.Recorded({LR: lr, BATCH: b}, its, [final * (1 + 2 * (43 - k) / 43) for k in its],
                                      [0.0] * 10 + [1.0] * 33, random=j < 2 * n // 3))
    return out


def test_surrogate_answers_with_the_nearest_recorded_trial(surrogate: ModuleType, two_knob_space) -> None:
    _, space = two_knob_space
    trials = [surrogate.Recorded({LR: lr, BATCH: b}, [1], [0.1], [1.0], True)
              for lr, b in ((1e-4, 8), (1e-3, 8), (1e-3, 16), (2e-2, 16))]
    table = surrogate.Table(space, trials)
    assert table.nearest({LR: 1.2e-3, BATCH: 8}, set()) == 1
    assert table.nearest({LR: 1.2e-3, BATCH: 8}, {1}) == 0  # used ones are skipped
    assert table.nearest({LR: 1.5e-2, BATCH: 8}, set()) == 1  # the choice value outweighs the whole cube
    assert table.nearest({LR: 5e-4, BATCH: 8}, set()) == 1  # log scale: 5e-4 is nearer 1e-3 (linearly, 1e-4)
    assert table.nearest({LR: 1e-3, BATCH: 64}, set()) in (1, 2)  # no trial has 64: the nearest in the cube


def test_surrogate_tells_structure_from_noise(surrogate: ModuleType, two_knob_space) -> None:
    """On a pure-noise objective the product's TPE can only match random search (the metric's control,
    about 0.8: module doc of search_efficiency) and knowing the best trial's neighbourhood buys nothing;
    on a smooth one TPE gains, ASHA's rung adds to it, and the neighbourhood oracle is far ahead."""
    path, space = two_knob_space
    live = surrogate.asha_tpe_overrides({"grace": 20, "rf": 3, "startup": 10, "init": "lhs", "reference": False}, path)
    got = {}
    for structured in (False, True):
        table = surrogate.Table(space, recorded(surrogate, structured))
        got[structured] = [surrogate.replay_setting(live, s, table, 40, 0, 24, **kw)["ratio_pooled"]
                           for s, kw in (([], {}), (["scheduler.name=fifo"], {}), ([], {"oracle_share": 0.05}))]
    print("ratio pooled [ASHA+TPE, TPE without rung, oracle] on noise / smooth:", got[False], got[True])
    (noise_asha, noise_fifo, noise_oracle), (smooth_asha, smooth_fifo, smooth_oracle) = got[False], got[True]
    assert 0.5 < noise_fifo < 1.0, got
    assert noise_oracle < 1.6, got
    assert smooth_fifo > 1.2 * noise_fifo and smooth_asha > 1.2 * noise_asha, got
    assert smooth_asha > smooth_fifo, got
    assert smooth_oracle > 2.5 and smooth_oracle > 2 * noise_oracle, got


def test_the_oracle_after_the_start_up_pays_for_the_start_up(surrogate: ModuleType, two_knob_space) -> None:
    """``after_startup``: the searcher's own start-up trials, then the oracle's draws: what a model that
    knew the good region once its start-up ended would score. Below the plain oracle, which spends
    nothing on a start-up, and higher the fewer start-up trials are spent. (Not a strict bound on the
    searcher: the oracle draws its neighbourhood in random order, a lucky model may do better.)"""
    path, space = two_knob_space
    live = surrogate.asha_tpe_overrides({"grace": 20, "rf": 3, "startup": 10, "init": "lhs", "reference": False}, path)
    table = surrogate.Table(space, recorded(surrogate, True))
    ratio = {}
    for n in (10, 3):
        setting = [f"searcher.n_startup_trials={n}"]
        ratio[n] = [surrogate.replay_setting(live, setting, table, 30, 0, 24, **kw)["ratio_pooled"]
                    for kw in ({}, {"oracle_share": 0.05, "after_startup": True}, {"oracle_share": 0.05})]
    print("ratio pooled [searcher, oracle after its start-up, oracle] by start-up size:", ratio)
    for _, after_startup, oracle in ratio.values():
        assert after_startup < oracle, ratio
    assert ratio[3][1] > ratio[10][1], ratio


def test_the_replay_cuts_each_trial_in_the_bracket_its_id_draws(surrogate: ModuleType, two_knob_space,
                                                                 tmp_path: Path) -> None:
    """``scheduler.brackets=2`` replays as live: the product's two ladders (bracket 1 starts one rung later)
    and each trial in the bracket ``ResumableASHA`` draws for its id; a bad trial in bracket 1 is not judged
    at bracket 0's first rung, nor against bracket 0's records.  (Before 2026-12-04 the replay used bracket
    0's ladder for every trial, so a brackets setting read the same as one bracket.)"""
    from ups.tune.prepare import prepare

    path, _ = two_knob_space
    live = surrogate.asha_tpe_overrides({"grace": 1, "rf": 3, "startup": 10, "init": "lhs", "reference": False}, path)
    one = surrogate.Brackets.of(prepare("round_a", [*live, "scheduler.rungs_from=operator", f"storage_path={tmp_path}"]))
    two = surrogate.Brackets.of(prepare("round_a", [*live, "scheduler.rungs_from=operator", "scheduler.brackets=2",
                                                    f"storage_path={tmp_path}"]))
    assert len(one.ladders) == 1 and two.ladders == [one.ladders[0], one.ladders[0][1:]]
    assert one.ladders[0] == [11, 13, 19, 37]  # the smoke profile: 10 autoencoder epochs + 1, 3, 9, 27
    ids = [f"t{i}" for i in range(400)]
    drawn = [two.pick(t) for t in ids]
    assert 0.15 < sum(drawn) / len(drawn) < 0.45  # Ray's odds: a softmax of the brackets' rung counts
    in0, in1 = [t for t, b in zip(ids, drawn) if b == 0], [t for t, b in zip(ids, drawn) if b == 1]
    first = one.ladders[0][0]
    its = list(range(1, 44))

    def trial(final: float):
        return surrogate.Recorded({}, its, [final] * len(its), [1.0] * len(its), True)

    cut = two.cutter(3.0)
    for t in in0[:3]:
        assert cut(t, trial(0.1)) == len(its)  # good trials in bracket 0 set its records
    assert cut(in1[0], trial(0.9)) == len(its)  # bracket 1: nothing recorded there yet, and no rung at `first`
    assert cut(in0[3], trial(0.9)) == its.index(first) + 1  # bracket 0 stops it at its first rung
    cut_one = one.cutter(3.0)
    for t in in0[:3]:
        cut_one(t, trial(0.1))
    assert cut_one(in1[0], trial(0.9)) == its.index(first) + 1  # one bracket: every trial meets the first rung


def test_a_run_folder_reduced_to_its_trials_file_replays_the_same(ray_session, tmp_path: Path,
                                                                  surrogate: ModuleType) -> None:
    """Tune's folders of a run are large and were lost with a machine; trials.json.gz alone (with
    search_efficiency.json and space.yaml) must give the replay and --pool the same trials."""
    import shutil

    from tests.test_sweep_engine import common, make_trainable

    from ups.tune.launcher import run_round

    bench = benchmark_module("search_efficiency")
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-2}\n")
    trainable = make_trainable("stages.operator.optimizer.lr", {}, iterations=4, sleep=0.0)
    root = tmp_path / "out"
    for name, searcher in (("random_s0", "random"), ("asha_tpe_s0", "optuna")):
        run_round("round_a", [*common(tmp_path), f"storage_path={root / 'runs'}", f"name={name}", f"space={space}",
                              f"searcher.name={searcher}", "scheduler.name=fifo", "num_samples=3",
                              "stages.autoencoder.epochs=0"], trainable=trainable)
    from_runs = bench.experiment_trials(root)
    assert sorted(from_runs) == ["asha_tpe_s0", "random_s0"] and all(len(v) == 3 for v in from_runs.values())
    assert all(t["params"] and len(t["its"]) == len(t["vals"]) == len(t["dts"]) > 0 for v in from_runs.values() for t in v)
    recorded = surrogate.load_trials([root])
    bench.export_trials(root)
    shutil.rmtree(root / "runs")
    assert bench.experiment_trials(root) == from_runs
    again = surrogate.load_trials([root])
    assert [(r.config, r.curve, r.random) for r in again] == [(r.config, r.curve, r.random) for r in recorded]
    assert sum(r.random for r in again) == 3


def test_trial_noise_decomposition_separates_model_from_trajectory_spread():
    """benchmarks/trial_noise.py's two-way split: a model effect shared by every trajectory is the model
    part; trajectory-specific noise is the interaction part and shrinks as 1/n in the score's spread."""
    import numpy as np

    decompose = benchmark_module("trial_noise").decompose
    rng = np.random.default_rng(0)
    hard = rng.uniform(0.05, 0.3, size=400)  # per-trajectory difficulty, the same for every model
    shift = np.array([-0.01, -0.005, 0.0, 0.005, 0.01])  # each model better or worse everywhere
    only_model = decompose((hard[None, :] + shift[:, None]).tolist())
    assert only_model["sd_interaction"] == pytest.approx(0.0, abs=1e-5)
    assert only_model["sd_model"] == pytest.approx(float(np.std(shift, ddof=1)), abs=1e-5)  # rounded to 5 places
    noisy = decompose((hard[None, :] + rng.normal(0.0, 0.04, size=(5, 400))).tolist())  # no model effect
    assert noisy["sd_interaction"] == pytest.approx(0.04, rel=0.05)
    assert noisy["sd_model"] < 0.004
    assert noisy["sd_of_score"]["25"] == pytest.approx(math.sqrt(noisy["sd_model"] ** 2 + 0.04 ** 2 / 25), rel=0.06)


def test_promotion_asha_resumes_the_best_of_each_third(surrogate: ModuleType) -> None:
    """Promotion-type ASHA (Li et al. 2020, Alg. 2; ``asha=promotion`` in the replay): a trial paused at a
    rung is resumed only once it is among the best floor(n / rf) there; higher rungs go first."""
    asha = surrogate.PromotionASHA([11, 33], 3.0)
    assert asha.next_job() is None  # nothing recorded: start a new trial
    asha.record(0, "a", 0.3)
    asha.record(0, "b", 0.1)
    assert asha.next_job() is None  # 2 results: the top third is empty, unlike Ray's ASHA (the first runs on)
    asha.record(0, "c", 0.2)
    assert asha.next_job() == ("b", 0)
    assert asha.next_job() is None  # b is promoted once
    for t, v in (("d", 0.05), ("e", 0.5), ("f", 0.4)):
        asha.record(0, t, v)
    assert asha.next_job() == ("d", 0)  # top 2 of 6: d, b
    for t, v in (("b", 0.09), ("d", 0.04), ("x", 0.2)):
        asha.record(1, t, v)
    assert asha.next_job() == ("d", 1)  # the higher rung first
    assert asha.next_job() is None


def test_promotion_asha_replay_pays_only_rungs_for_its_first_trials(surrogate: ModuleType, two_knob_space) -> None:
    """On the smooth synthetic table (10 free autoencoder reports, then 1 trial-s per report to 43), the
    first rf new trials run to the first rung (iteration 20: 10 trial-s each), then the best resumes to its
    end (23 trial-s more); and the replay still finds the smooth optimum faster than random search."""
    path, space = two_knob_space
    live = surrogate.asha_tpe_overrides({"grace": 20, "rf": 3, "startup": 10, "init": "lhs", "reference": False}, path)
    table = surrogate.Table(space, recorded(surrogate, True))
    from ups.tune.tuner_build import asha_rungs
    from ups.tune.prepare import prepare

    p = prepare("round_a", live)
    rungs = asha_rungs(p.scfg, p.base, p.space)[2]
    assert rungs[0] == 20
    c = surrogate.promotion_curve(p, table, rungs, 3.0, 60.0, 0)
    spent = [s for s, _ in c]
    rung_runs = [x for j in range(3) for x in [10.0 * j] * 10 + [10.0 * j + k for k in range(1, 11)]]
    assert spent[:60] == rung_runs  # three new trials, each to iteration 20
    assert spent[60:83] == [30.0 + k for k in range(1, 24)]  # then the best of them resumed to its end
    got = surrogate.replay_setting(live, ["asha=promotion"], table, 20, 0, 24)["ratio_pooled"]
    assert got > 1.2, got


def test_curve_counts_the_compute_of_nonfinite_reports(bench: ModuleType, monkeypatch) -> None:
    """A diverged trial's placeholder report is no result, but its trial-seconds were spent (the sweep's
    ComputeBudgetStopper counts them): the best-so-far curve keeps them on its compute axis."""
    import pandas as pd

    h = pd.DataFrame({"timestamp": [1, 2, 3], "time_total_s": [5.0, 10.0, 15.0], "time_this_iter_s": [5.0, 5.0, 5.0],
                      "val_nrmse": [0.5, 1.0e3, 0.4], "nonfinite": [None, 1, None]})
    monkeypatch.setattr(bench, "val_reports", lambda _: h)
    assert bench.curve(Path("unused")) == [(5.0, 0.5), (10.0, 0.5), (15.0, 0.4)]
