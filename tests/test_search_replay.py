"""The search-efficiency benchmark's replay of ASHA's rung (benchmarks/search_efficiency.py): same stop
decisions as Ray's own ASHA bracket, and the metric's baseline for an equally good searcher."""
from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "search_efficiency.py"
    spec = importlib.util.spec_from_file_location("search_efficiency", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


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
        replay = bench._replay(trials, [int(r) for r in rungs], rf)
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
