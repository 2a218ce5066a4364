"""The dims round's answer to "does TTC help small models more?" (ups.ttc_gain): paired bootstrap over test
samples, a slope against log2(dim), and a verdict that only says yes/no when the interval excludes 0."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ups.ttc_gain import MIN_SAMPLES, gain_interval, mean_difference_interval, newest_experiment, ttc_verdict

DIMS = (8, 16, 32, 64)


def _row(dim: int, plain: np.ndarray, ttc: np.ndarray) -> dict:
    return {"dim": dim, "params": 1000 * dim, "nrmse": float(plain.mean()), "nrmse_ttc": float(ttc.mean()),
            "eval_samples_json": json.dumps({"nrmse": plain.tolist(), "nrmse_ttc": ttc.tolist()})}


def _rows(gains: dict[int, float], n: int = 64, noise: float = 0.01, seed: int = 0) -> list[dict]:
    """Per-sample nRMSE with a sample-level difficulty shared by every dim (the same test split) and a
    per-sample TTC effect around ``gains[dim]``."""
    rng = np.random.default_rng(seed)
    hard = rng.lognormal(-2.3, 0.5, n)  # (n,) how hard each test trajectory is
    out = []
    for dim, g in gains.items():
        plain = hard * (1 + 0.05 * rng.standard_normal(n)) * (32 / dim) ** 0.3
        ttc = plain * (1 - g + noise * rng.standard_normal(n))
        out.append(_row(dim, plain, ttc))
    return out


def test_gain_falling_with_dim_is_a_yes_with_an_interval_below_zero() -> None:
    v = ttc_verdict(_rows({8: 0.20, 16: 0.14, 32: 0.08, 64: 0.02}))
    assert v.answer == "yes" and v.hi < 0 and v.lo <= v.slope <= v.hi
    assert v.slope == pytest.approx(-0.06, abs=0.01)  # 6 points of gain lost per doubling
    assert [d.dim for d in v.dims] == list(DIMS) and all(d.resolved and d.lo < d.gain < d.hi for d in v.dims)
    assert "helps small models more" in v.text and "one training seed per dim" in v.text


def test_gain_rising_with_dim_is_a_no() -> None:
    v = ttc_verdict(_rows({8: 0.01, 16: 0.05, 32: 0.09, 64: 0.13}))
    assert v.answer == "no" and v.lo > 0


def test_a_flat_gain_within_sample_noise_is_not_resolved() -> None:
    v = ttc_verdict(_rows({8: 0.05, 16: 0.05, 32: 0.05, 64: 0.05}, n=32, noise=0.15))
    assert v.answer == "no difference resolved" and v.lo < 0 < v.hi
    assert "eval.max_samples" in v.text


def test_a_smoke_sized_test_set_gives_no_answer_however_clear_the_trend() -> None:
    v = ttc_verdict(_rows({8: 0.20, 16: 0.14, 32: 0.08, 64: 0.02}, n=8))
    assert v.answer == "too few test samples" and v.hi < 0  # the interval is shown, not read
    assert "eval.max_samples=-1" in v.text


def test_few_samples_widen_the_interval() -> None:
    gains = {8: 0.10, 16: 0.08, 32: 0.06, 64: 0.04}
    wide = ttc_verdict(_rows(gains, n=24, noise=0.05))
    narrow = ttc_verdict(_rows(gains, n=256, noise=0.05))
    assert (narrow.hi - narrow.lo) < 0.5 * (wide.hi - wide.lo)


def test_point_gain_matches_the_leaderboard_definition() -> None:
    rows = _rows({8: 0.1, 16: 0.05})
    v = ttc_verdict(rows)
    for r, d in zip(rows, v.dims, strict=True):
        assert d.gain == pytest.approx(1 - r["nrmse_ttc"] / r["nrmse"])
        assert d.n_samples == 64


def test_not_answerable_without_per_sample_figures_or_without_ttc() -> None:
    rows = _rows({8: 0.1, 16: 0.05})
    old = [{k: v for k, v in r.items() if k != "eval_samples_json"} for r in rows]  # a leaderboard from before
    v = ttc_verdict(old)
    assert v.answer == "not answerable" and all(d.n_samples == 0 and d.gain > 0 for d in v.dims)
    assert all(math.isnan(d.recon_nrmse) for d in v.dims)  # a leaderboard from before the round trip existed
    plain = np.linspace(0.05, 0.2, 16)
    v = ttc_verdict([_row(8, plain, plain.copy()), _row(16, plain * 0.9, plain * 0.9)])
    assert v.answer == "not answerable" and "TTC changed no forecast" in v.text
    assert ttc_verdict([{"dim": 8, "eval_samples_json": "{not json"}]).answer == "not answerable"
    assert json.loads(json.dumps(v.as_dict()))["question"] == "does TTC help small models more?"


def test_the_dims_report_shows_the_verdict_of_its_newest_sweep(tmp_path) -> None:
    import ups.reports.html as report_html
    from ups.leaderboard import upsert_rows

    def lb_rows(experiment: str, gains: dict[int, float], hour: int) -> list[dict]:
        return [{**r, "run_id": f"{experiment}-{r['dim']}", "kind": "trial", "round": "dims", "experiment": experiment,
                 "timestamp": f"2026-12-03T{hour:02d}:00:00", "status": "completed", "label": f"dim={r['dim']}",
                 "sampled_json": json.dumps({"latent.dim": r["dim"]})} for r in _rows(gains)]

    lb = tmp_path / "leaderboard.csv"
    new = [{**r, "recon_nrmse": 0.0101 * r["dim"] / 8} for r in lb_rows("dims-new", {8: 0.20, 16: 0.14, 32: 0.08,
                                                                                     64: 0.02}, 2)]
    upsert_rows(lb, lb_rows("dims-old", {8: 0.01, 16: 0.05, 32: 0.09, 64: 0.13}, 1) + new)
    page = report_html.write_report(None, lb, "dims", tmp_path / "out").read_text()
    section = page[page.index('<section id="ttc-by-dim">'):]
    assert "yes: TTC helps small models more" in section and section.count("<tr><td>") == 4
    # each dim's autoencoder round trip (ups.reconstruction) beside its nRMSE: is a small model its autoencoder?
    assert all(f"<td>{v:.4g}</td>" in section for v in (0.0101, 0.0202, 0.0404, 0.0808)), section
    assert "ttc-by-dim" not in report_html.write_report(None, lb, "all", tmp_path / "all").read_text()
    # the sweep's ttc_by_dim_<experiment>.json is written again from the leaderboard as it is now (a sweep run before
    # a fix of the verdict kept its old file while the report showed the new answer); the older sweep's file stays
    stale = tmp_path / "out" / "ttc_by_dim_dims-old.json"
    stale.write_text("{}")
    report_html.write_report(None, lb, "dims", tmp_path / "out")
    written = json.loads((tmp_path / "out" / "ttc_by_dim_dims-new.json").read_text())
    assert written["answer"] == "yes" and [d["dim"] for d in written["dims"]] == [8, 16, 32, 64]
    assert stale.read_text() == "{}" and not (tmp_path / "all" / "ttc_by_dim_dims-new.json").exists()


def test_one_models_interval_matches_the_verdicts_and_fits_a_large_test_split() -> None:
    rows = _rows({8: 0.10, 16: 0.05})
    v = ttc_verdict(rows)
    per = json.loads(rows[0]["eval_samples_json"])
    lo, hi = gain_interval(per["nrmse"], per["nrmse_ttc"])
    assert lo == pytest.approx(v.dims[0].lo, abs=0.01) and hi == pytest.approx(v.dims[0].hi, abs=0.01)
    rng = np.random.default_rng(1)
    plain = rng.lognormal(-2.3, 0.5, 20_000)  # a 20,000-sample split: drawn in chunks
    lo, hi = gain_interval(plain, plain * (1 - 0.05 + 0.01 * rng.standard_normal(plain.size)))
    assert lo < 0.05 < hi and hi - lo < 0.002
    assert all(np.isnan(gain_interval([], [])))


# ----------------------------------------------------------------------------- training seeds per dim
def _seed_rows(offsets: dict[int, list[float]], base_gain: float = 0.05, n: int = 256, noise: float = 0.01) -> list[dict]:
    """Rows of several training seeds per dim on one test split: seed k of a dim has TTC gain
    ``base_gain + offsets[dim][k]`` (what a retrained model of the same dim does differently)."""
    rng = np.random.default_rng(3)
    hard = rng.lognormal(-2.3, 0.5, n)
    out = []
    for dim, offs in offsets.items():
        for k, off in enumerate(offs):
            plain = hard * (1 + 0.05 * rng.standard_normal(n))
            ttc = plain * (1 - base_gain - off + noise * rng.standard_normal(n))
            out.append({**_row(dim, plain, ttc), "seed": k})
    return out


def test_seed_to_seed_spread_is_in_the_interval_and_can_undo_a_one_seed_yes() -> None:
    """The same gain for every dim, but seed 0 happens to fall with dim and seeds 1-2 to rise: seed 0 alone says
    "yes" (test-sample noise only), all three seeds together cannot tell, and each dim's gain is its seeds' mean."""
    offsets = {8: [0.06, -0.03, -0.03], 16: [0.02, -0.01, -0.01], 32: [-0.02, 0.01, 0.01], 64: [-0.06, 0.03, 0.03]}
    rows = _seed_rows(offsets)
    one = ttc_verdict([r for r in rows if r["seed"] == 0])
    assert one.answer == "yes" and "one training seed per dim" in one.text
    three = ttc_verdict(rows)
    assert three.answer == "no difference resolved" and three.lo < 0 < three.hi
    assert "3 training seeds per dim" in three.text and "training noise is in the interval" in three.text
    assert all(d.seeds == 3 for d in three.dims)
    for d in three.dims:
        own = [r for r in rows if r["dim"] == d.dim]
        assert d.gain == pytest.approx(np.mean([1 - r["nrmse_ttc"] / r["nrmse"] for r in own]))
        assert d.nrmse == pytest.approx(np.mean([r["nrmse"] for r in own]))
    # seeds that agree keep the answer, with an interval no narrower than one seed's
    agree = ttc_verdict(_seed_rows({8: [0.06] * 3, 16: [0.02] * 3, 32: [-0.02] * 3, 64: [-0.06] * 3}))
    assert agree.answer == "yes" and agree.hi < 0


def test_dims_rows_reads_the_training_seed_of_each_trial() -> None:
    import pandas as pd

    from ups.ttc_gain import dims_rows

    lb = pd.DataFrame([{"kind": "trial", "experiment": "dims-x", "timestamp": f"2026-12-03T0{i}:00:00",
                        "sampled_json": json.dumps({"latent.dim": dim, "training.seed": seed}), "params": 10,
                        "nrmse": 0.1, "nrmse_ttc": 0.09, "eval_samples_json": ""}
                       for i, (dim, seed) in enumerate([(8, 0), (8, 1), (16, 0)])])
    assert [(r["dim"], r["seed"]) for r in dims_rows(lb)] == [(8, 0), (8, 1), (16, 0)]
    v = ttc_verdict(dims_rows(lb))
    assert [(d.dim, d.seeds) for d in v.dims] == [(8, 2), (16, 1)] and v.answer == "not answerable"


def test_num_samples_beyond_one_grid_pass_adds_training_seeds_before_ray(tmp_path) -> None:
    """The grid searcher repeats its grid with the next training seeds (not the same models again); a space
    that already sweeps training.seed, or promotion.seeds on top, is refused in prepare()."""
    from ups.config import ConfigError
    from ups.tune.prepare import planned_trials, prepare
    from tests.fixtures.modules import REPO, sweep_script

    d = sweep_script("dims").DEFAULTS
    one = prepare("dims", [], defaults=d)
    assert "training.seed" not in one.space.params and planned_trials(one) == "5 (grid)"
    p = prepare("dims", ["num_samples=15", "training.seed=4"], defaults=d)
    assert p.space.params["training.seed"].values == [4, 5, 6] and p.space.grid_size() == 15
    assert planned_trials(p) == "15 (grid: 5 points × 3 training seeds)"
    assert "training.seed" not in prepare("round_a", ["num_samples=15"]).space.params  # TPE: no passes
    with pytest.raises(ConfigError, match="promotion.seeds=2 would retrain"):
        prepare("dims", ["num_samples=10", "promotion.seeds=2"], defaults=d)
    seeded = tmp_path / "dims_seeded.yaml"
    seeded.write_text((REPO / "search_spaces" / "dims.yaml").read_text().replace(
        "params:\n", "params:\n  training.seed: {dist: grid, values: [0, 1]}\n"))
    assert prepare("dims", [f"space={seeded}"], defaults=d).space.grid_size() == 10
    with pytest.raises(ConfigError, match="already sweeps training.seed"):
        prepare("dims", [f"space={seeded}", "num_samples=20"], defaults=d)
    # a space with drawn params: Tune's grid searcher samples them anew per trial, so passes would not repeat
    # the same configurations (round A under the grid searcher printed "1 points × 4 training seeds" and ran
    # four different learning rates)
    with pytest.raises(ConfigError, match=r"round_a.yaml draws stages.operator.optimizer.lr, .* at random .*"
                                          r"Fix: give them dist: grid .*or num_samples=1 for one pass"):
        prepare("round_a", ["searcher.name=grid", "scheduler.name=fifo"])
    one_pass = prepare("round_a", ["searcher.name=grid", "scheduler.name=fifo", "num_samples=1"])
    assert planned_trials(one_pass) == ("1 (grid; lr, warmup_steps_ratio, ema_decay, betas drawn at random per "
                                        "trial)")


def test_the_seed_part_of_the_interval_is_not_understated() -> None:
    """Three seeds with gains 5 % − 3, 5 %, 5 % + 3 points (sample noise negligible): resampling three values
    alone puts the 95 % interval at their extremes, ±3 points, where the mean of three new seeds would spread
    √(3/2) wider; the interval is widened by that factor."""
    v = ttc_verdict(_seed_rows({8: [-0.03, 0.0, 0.03], 16: [0.0, 0.0, 0.0]}, noise=0.0005))
    d8 = v.dims[0]
    assert d8.gain == pytest.approx(0.05, abs=0.002)
    assert d8.lo < 0.05 - 0.033 and d8.hi > 0.05 + 0.033  # ±3 points × √1.5 ≈ ±3.7
    assert d8.lo > 0.05 - 0.045 and d8.hi < 0.05 + 0.045


def test_unusable_figures_are_left_out_and_the_smallest_split_decides_too_few() -> None:
    """A cell with NaN or unpaired per-sample figures is no sample set; a dim with a 0 nRMSE gets no gain (not a
    division by zero); one dim with per-sample figures answers nothing; and a verdict over splits of different
    sizes is read only when the smallest reaches MIN_SAMPLES."""
    from ups.ttc_gain import MIN_SAMPLES, read_eval_samples

    assert read_eval_samples(json.dumps({"nrmse": [0.1, float("nan")], "nrmse_ttc": [0.1, 0.1]})) is None
    assert read_eval_samples(json.dumps({"nrmse": [0.1, 0.2], "nrmse_ttc": [0.1]})) is None
    assert read_eval_samples(json.dumps({"nrmse": [0.1, 0.2], "nrmse_ttc": [0.1, 0.1]}))[1].tolist() == [0.1, 0.1]
    (one,) = _rows({8: 0.2})
    v = ttc_verdict([one, {"dim": 16, "nrmse": 0.0, "nrmse_ttc": 0.0}])
    assert v.answer == "not answerable" and math.isnan(v.dims[1].gain), v
    rows = _rows({8: 0.20, 16: 0.14, 32: 0.08, 64: 0.02})
    small = _rows({64: 0.02}, n=MIN_SAMPLES - 1, seed=1)[0]
    v = ttc_verdict([*rows[:3], small])
    assert v.answer == "too few test samples" and f"{MIN_SAMPLES - 1}/64 test samples" in v.text, v.text


# ----------------------------------------------------------------------------- mutation review (round 8a)
def test_a_model_with_zero_error_has_no_ttc_gain() -> None:
    """A zero mean nRMSE without TTC gives a gain of 0 (not 1 - 0/1 = 1): nothing to improve on."""
    assert gain_interval([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], n_boot=50) == (0.0, 0.0)


def test_the_bootstrap_draws_every_test_sample() -> None:
    """TTC helps only the last of five samples (its nRMSE 1 → 0): a draw that includes it gains k/5 for k copies,
    so the upper end reaches at least 1/5; a bootstrap that never drew the last index would give (0, 0)."""
    lo, hi = gain_interval([1.0] * 5, [1.0, 1.0, 1.0, 1.0, 0.0], n_boot=400)
    assert lo == pytest.approx(0.0) and hi >= 0.2 - 1e-12


def test_mean_difference_interval_is_of_b_minus_a_with_lo_below_hi() -> None:
    """Per-sample differences b - a of 0.3 or 0.5 (mean 0.4): the interval lies in [0.3, 0.5], ordered, around
    0.4; a constant difference gives a point; unpaired figures give (nan, nan)."""
    a = np.zeros(40)
    b = np.tile([0.3, 0.5], 20)
    lo, hi = mean_difference_interval(a, b, n_boot=500)
    assert 0.3 <= lo < 0.4 < hi <= 0.5
    assert mean_difference_interval([1.0, 2.0], [1.25, 2.25], n_boot=20) == pytest.approx((0.25, 0.25))
    assert all(np.isnan(mean_difference_interval([1.0, 2.0], [1.0])))


def test_exactly_min_samples_test_samples_are_enough_to_read_the_verdict() -> None:
    """"too few" is below MIN_SAMPLES: a clear trend on exactly MIN_SAMPLES samples is read as "yes"."""
    v = ttc_verdict(_rows({8: 0.20, 16: 0.14, 32: 0.08, 64: 0.02}, n=MIN_SAMPLES))
    assert v.answer == "yes" and v.hi < 0 and f"{MIN_SAMPLES} test samples" in v.text


def test_each_dims_nrmse_with_ttc_is_the_mean_of_its_ttc_samples() -> None:
    """DimGain.nrmse_ttc is the mean per-sample nRMSE with TTC (hand values), not the one without."""
    plain = np.array([0.2, 0.4])
    v = ttc_verdict([_row(8, plain, np.array([0.1, 0.2])), _row(16, plain, np.array([0.2, 0.2]))])
    assert [(d.nrmse, d.nrmse_ttc) for d in v.dims] == [pytest.approx((0.3, 0.15)), pytest.approx((0.3, 0.2))]
    assert [d.gain for d in v.dims] == [pytest.approx(0.5), pytest.approx(1 / 3)]


def test_uneven_seed_counts_are_named_as_a_range() -> None:
    """Two seeds of dim 8 and three of dim 16: the text says "2–3 training seeds per dim"."""
    rows = _seed_rows({8: [0.0, 0.01], 16: [0.0, 0.01, 0.02]}, n=32)
    v = ttc_verdict(rows)
    assert [d.seeds for d in v.dims] == [2, 3]
    assert "2–3 training seeds per dim" in v.text, v.text


def test_without_per_sample_figures_a_dims_gain_is_the_mean_of_its_seeds_gains() -> None:
    """Seeds of one dim with nRMSE 0.1 → 0.05 (gain 0.5) and 0.3 → 0.3 (gain 0): the dim's gain is 0.25, the
    mean of the seeds' gains (as with per-sample figures), not 1 - 0.175 / 0.2 = 0.125 from the mean nRMSEs."""
    v = ttc_verdict([{"dim": 8, "nrmse": 0.1, "nrmse_ttc": 0.05}, {"dim": 8, "nrmse": 0.3, "nrmse_ttc": 0.3}])
    (d,) = v.dims
    assert d.gain == pytest.approx(0.25) and d.seeds == 2 and d.n_samples == 0
    assert (d.nrmse, d.nrmse_ttc) == (pytest.approx(0.2), pytest.approx(0.175))


def test_the_newest_experiment_is_the_one_with_the_latest_trial_row() -> None:
    """Rows out of time order; only trial rows count (a later champion row of another sweep does not)."""
    lb = pd.DataFrame([{"kind": "trial", "experiment": "b", "timestamp": "2026-12-03T05:00:00"},
                       {"kind": "trial", "experiment": "c", "timestamp": "2026-12-03T09:00:00"},
                       {"kind": "trial", "experiment": "a", "timestamp": "2026-12-03T01:00:00"},
                       {"kind": "champion", "experiment": "z", "timestamp": "2026-12-04T00:00:00"}])
    assert newest_experiment(lb) == "c"
    assert newest_experiment(lb[lb["kind"] == "champion"]) is None
