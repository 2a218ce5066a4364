"""Every sweep script end to end in a tiny smoke profile on the real local Ray (session fixture):
real data, real UPS training, Optuna/ASHA, gates, leaderboard rows, promotion, champion, resume."""
from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ups.config import ConfigError
from ups.leaderboard import read_leaderboard
from ups.tune.space import load_space
from ups.tune.scratch import scratch_root
from tests.fixtures.data import TINY_OVERRIDES
from tests.fixtures.modules import load_file, sweep_script

REPO = Path(__file__).resolve().parents[1]
TERMINAL = {"completed", "stopped"}


def script(name: str):
    return sweep_script(name).main


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sweeps")


def tiny(work: Path, cache: Path, *extra: str) -> list[str]:
    """The smoke profile shrunk for CI: the shared tiny dataset, 1-2 epochs per stage, 2 trials."""
    return [*TINY_OVERRIDES, f"data.cache_dir={cache}", "data.reduced_resolution=4", "stages.autoencoder.epochs=1",
            "stages.operator.epochs=2", "stages.operator.batch_size=8", "eval.max_samples=4", "ttc.candidates=2",
            "ttc.beam_width=1", "ttc.max_evaluations=8", "num_samples=2",
            "max_concurrent=2", "fno_budget_s=1", "verbose=0", f"storage_path={work / 'runs'}",
            f"leaderboard={work / 'leaderboard.csv'}", f"champion={work / 'champion.json'}",
            f"report_dir={work / 'reports'}", *extra]


def trial_rows(work: Path, experiment: str):
    lb = read_leaderboard(work / "leaderboard.csv")
    return lb[(lb["experiment"] == experiment) & (lb["kind"] == "trial")]


def latest_experiment(work: Path, round_name: str) -> str:
    return sorted(p.name for p in (work / "runs").glob(f"{round_name}-*"))[-1]


def test_round_a_smoke(ray_session, tiny_data, tiny_cache_dir, work, capsys) -> None:
    assert script("round_a")(tiny(work, tiny_cache_dir)) == 0
    exp = latest_experiment(work, "round_a")
    rows = trial_rows(work, exp)
    assert len(rows) == 2 and rows["run_id"].is_unique
    assert set(rows["status"]) <= TERMINAL and rows["config_hash"].str.len().min() == 12
    assert (rows["label"] == "reference").sum() == 1
    assert rows["val_nrmse"].notna().all() and rows["gate_reasons"].notna().all()
    assert rows["val_nrmse_ttc"].isna().all()  # round A searches no ttc.* key: no val evaluation with TTC is paid
    done = rows[rows["stop_reason"] == "completed"]
    assert len(done) >= 1 and done["nrmse"].notna().all() and done["nrmse_ttc"].notna().all()
    assert all(Path(c).exists() for c in done["checkpoint"])
    # every report names the GPU share the trial ran on (none here): what its gpu_hours are priced on
    reports = [json.loads(line) for f in (work / "runs" / exp).glob("trial_*/result.json")
               for line in f.read_text().splitlines()]
    assert reports and all(r["gpu_share"] == 0.0 for r in reports)
    lb = read_leaderboard(work / "leaderboard.csv")
    assert set(lb[lb["kind"] == "baseline"]["label"]) >= {"persistence", "linear"}
    # PDEBench's metric set beside nRMSE, for the trials and the baselines on the same test split
    from ups.leaderboard import PDEBENCH_COLUMNS

    scored = lb[lb["run_id"].isin(done["run_id"]) | (lb["kind"] == "baseline")]
    assert (scored[list(PDEBENCH_COLUMNS)].astype(float) >= 0).all().all(), scored[list(PDEBENCH_COLUMNS)]
    page = (work / "reports" / "round_a" / "index.html").read_text()
    assert 'id="pdebench-metrics"' in page
    # the autoencoder's round trip of the test frames (ups.reconstruction): every finished trial, a report column
    assert (done["recon_nrmse"].astype(float) > 0).all(), done["recon_nrmse"]
    assert "<th" in page and ">recon_nrmse<" in page
    out = capsys.readouterr().out
    assert "Leaderboard" in out and "report:" in out and "round A: best val_nrmse" in out
    # the trials' own eval scores 4 test trajectories, the baselines all: the sweep says their nrmse do not compare
    assert "note: eval.max_samples=4: each trial's own eval scores the first 4 of the " in out
    assert "note: searcher: TPE models no trial of this sweep: each of its 2 trials" in out  # 3 start-up trials
    db = (work / "reports" / "round_a" / "optuna.db").resolve()
    assert f"Optuna study: study '{exp}' in sqlite:///{db} (optuna-dashboard sqlite:///{db})" in out, out[-2000:]
    from tests.test_wandb_logging import runs, table

    (wb,) = [r for rid, r in runs(work / "runs" / "wandb").items() if rid == exp]  # one offline run per sweep
    assert wb["group"] == "sota-sweep-round-a" and wb["folder"].parent == work / "runs" / "wandb"  # no wandb/wandb/
    assert {r["trial_id"]: r["status"] for r in table(wb)} == dict(zip(rows["trial_id"].astype(str), rows["status"]))
    scratch = scratch_root(exp, str(work / "runs"))  # trainer scratch is removed as each trial ends
    assert not scratch.exists() or not any(scratch.iterdir()), sorted(p.name for p in scratch.iterdir())
    from tests.test_pickled_names import assert_released

    assert_released(work / "runs" / exp)  # a later version can resume it: every name its state pickles is kept


def test_round_a_under_pbt_exploits_checkpoints(ray_session, tiny_data, tiny_cache_dir, work, capsys) -> None:
    """scheduler.name=pbt: bottom trials take over a top trial's checkpoint with perturbed values and finish.
    An ASHA setting given with it is accepted and named in a note as having no effect."""
    assert script("round_a")(tiny(work, tiny_cache_dir, "wandb.enabled=false", "write_report=false", "promotion.top_k=0",
                                  "scheduler.name=pbt", "searcher.name=random", "scheduler.perturbation_interval=2", "num_samples=4",
                                  "stages.operator.epochs=6", "training.checkpoint_every=1", "baselines=false",
                                  "scheduler.rungs_from=operator")) == 0
    assert ("note: scheduler.rungs_from=operator has no effect: only scheduler.name=asha reads it, and this sweep runs "
            "scheduler.name=pbt") in capsys.readouterr().out
    exp = latest_experiment(work, "round_a")
    rows = trial_rows(work, exp)
    assert len(rows) == 4 and set(rows["status"]) <= TERMINAL, rows[["status", "stop_reason"]]
    # PBT's log: one line per exploit (target, clone, …, old config, new config); new values stay in range
    exploits = [json.loads(line) for line in (work / "runs" / exp / "pbt_global.txt").read_text().splitlines()]
    assert exploits, "PBT never exploited"
    # never once the operator stage (autoencoder 1 + operator 6 epochs) is trained: a clone would train nothing;
    # nor before the operator has trained one perturbation interval (burn-in 1 + 2): before, all score alike
    # (e[2] is the trial's result before the one that triggered the exploit, as Ray logs it: ≥ 3 − 1)
    assert all(2 <= e[2] < 7 and e[3] < 7 for e in exploits), [e[:4] for e in exploits]
    # one population taking turns on the 2 CPUs (max_concurrent=2 is not applied under PBT), not two waves
    # of two: a trial of the two that started last reported before the two that started first had both ended
    # (with the searcher's limit of 2, the second wave's first report came after the first wave's last). Not
    # "every trial before any trial's last report": a trial PBT never paused can run its whole course while
    # the fourth waits for a CPU (in one run the first trial's last report and the fourth's first fell in the
    # same second of result.json's whole-second timestamps, while the third had reported 2 s before that)
    times = sorted([json.loads(line)["timestamp"] for line in f.read_text().splitlines()]
                   for f in (work / "runs" / exp).glob("trial_*/result.json"))
    first_two, last_two = times[:2], times[2:]
    assert len(times) == 4 and min(t[0] for t in last_two) < max(t[-1] for t in first_two), times
    # each exploited trial's row carries the schedule its weights trained with (Ray's policy file, donors named
    # by trial id): from the start in a donor, ending in the trial itself with the values on its row
    exploited = {f.stem.removeprefix("pbt_policy_") for f in (work / "runs" / exp).glob("pbt_policy_*.txt")}
    assert exploited
    # the reference trial (the space's reference point) trains on its own, the yardstick of the small-eval gates:
    # it is neither exploited nor anyone's donor, and keeps its label
    ref = rows[rows["label"] == "reference"]
    assert len(ref) == 1 and ref["trial_id"].iloc[0] not in exploited, rows[["trial_id", "label"]]
    donors = {s["trial"] for text in rows["pbt_schedule"] if isinstance(text, str) and text for s in json.loads(text)}
    assert ref["trial_id"].iloc[0] not in donors, donors
    for _, row in rows.iterrows():
        text = row["pbt_schedule"] if isinstance(row["pbt_schedule"], str) else ""
        schedule = json.loads(text) if text else []
        assert bool(schedule) == (row["trial_id"] in exploited), (row["trial_id"], schedule, exploited)
        if schedule:
            assert schedule[0]["from_iteration"] == 0 and schedule[-1]["trial"] == row["trial_id"], schedule
            assert {s["trial"] for s in schedule} <= set(rows["trial_id"]), schedule
            assert all(0 < s["from_iteration"] < 7 for s in schedule[1:]), schedule
            sampled = json.loads(row["sampled_json"])
            assert all(sampled[k] == v for k, v in schedule[-1]["values"].items()), (schedule[-1], sampled)
    params = load_space(REPO / "search_spaces" / "round_a.yaml").params
    for *_, new in exploits:
        for key, value in new.items():
            p = params[key]
            if p.dist in ("uniform", "loguniform"):
                assert p.low <= value <= p.high, (key, value)
            else:
                assert value in [p.encode(v) for v in p.values], (key, value)
    from tests.test_pickled_names import assert_released

    assert_released(work / "runs" / exp)  # PBT's scheduler and random search's state, as ASHA's and TPE's


def test_a_cuda_device_the_trials_cannot_see_is_refused_before_ray(tmp_path) -> None:
    """training.device=cuda with resources.gpu=0 ran a whole sweep of failing trials and printed 'best val_nrmse
    nan'; Ray shows a trial only its own GPU, as cuda:0."""
    from ups.tune.prepare import prepare

    with pytest.raises(ConfigError, match=r"training.device=cuda but resources.gpu=0: .* Fix: resources.gpu=0.25"):
        prepare("round_a", ["training.device=cuda", f"storage_path={tmp_path}"])
    with pytest.raises(ConfigError, match=r"training.device=cuda:1: Ray shows each trial only the GPU it assigns"):
        prepare("round_a", ["training.device=cuda:1", "resources.gpu=0.25", f"storage_path={tmp_path}"])
    prepare("round_a", ["training.device=cuda", "resources.gpu=0.25", f"storage_path={tmp_path}"])
    prepare("round_a", ["training.device=cpu", f"storage_path={tmp_path}"])


def test_a_sweep_without_test_evaluation_is_refused_when_it_promotes(tmp_path) -> None:
    """eval.max_samples=0 (no test evaluation) trained the whole round, then no trial could pass the small-eval
    gates ("no finite small-eval nRMSE"); without a promotion it is a sweep on validation figures, and runs."""
    from ups.tune.prepare import prepare

    with pytest.raises(ConfigError, match=r"eval.max_samples=0 turns each trial's test evaluation off.*promotion.top_k=1"
                                          r".* Fix: eval.max_samples=-1"):
        prepare("round_a", ["eval.max_samples=0", f"storage_path={tmp_path}"])
    prepare("round_a", ["eval.max_samples=0", "promotion.top_k=0", f"storage_path={tmp_path}"])


def test_round_a_summary_skips_trials_without_a_score(capsys) -> None:
    import pandas as pd

    from ups.tune.summary import SweepOutcome

    mod = sweep_script("round_a", "sweep_round_a_summary")
    rows = pd.DataFrame({"experiment": ["e", "e", "e"], "kind": ["trial"] * 3, "run_id": ["e-1", "e-2", "e-3"],
                         "val_nrmse": [float("nan"), 0.2, 0.1], "sampled_json": ['{"stages.operator.optimizer.lr": 1e-3}',
                                                                              '{"stages.operator.optimizer.lr": 2e-3}',
                                                                              '{"stages.operator.optimizer.lr": 3e-3}']})
    mod.summarize(SweepOutcome("e", "/x/e", Path("lb.csv"), rows))
    assert "best val_nrmse 0.1 at lr=0.003 (e-3)" in capsys.readouterr().out
    mod.summarize(SweepOutcome("e", "/x/e", Path("lb.csv"), rows.assign(val_nrmse=float("nan"))))
    assert "round A: no trial reported a val_nrmse (3 trial(s)" in capsys.readouterr().out
    # an errored trial's last report, or a gate-stopped one's, is never the best while a sound trial reported
    broken = rows.assign(status=["stopped", "stopped", "error"],
                         stop_reason=["asha: early stop at iteration 2", "gate:conservation (gap 3 > limit 1)",
                                      "error (see the trial's error.txt)"])
    mod.summarize(SweepOutcome("e", "/x/e", Path("lb.csv"), broken.assign(val_nrmse=[0.3, 0.2, 0.1])))
    assert "best val_nrmse 0.3 at lr=0.001 (e-1)\n" in capsys.readouterr().out
    mod.summarize(SweepOutcome("e", "/x/e", Path("lb.csv"), broken.assign(val_nrmse=[float("nan"), 0.2, 0.1])))
    assert "best val_nrmse 0.2 at lr=0.002 (e-2, stopped: gate:conservation (gap 3 > limit 1))" in capsys.readouterr().out


def test_pbt_over_model_keys_is_refused_before_ray(tmp_path) -> None:
    from ups.tune.prepare import prepare

    with pytest.raises(ConfigError, match=r"round_b.yaml: scheduler.name=pbt cannot search model keys \(.*operator\.hidden_dim") as e:
        prepare("round_b", ["scheduler.name=pbt", "searcher.name=random", f"storage_path={tmp_path}"])
    keys = str(e.value).split("(", 1)[1].split(")", 1)[0].split(", ")
    assert len(keys) == len(set(keys))  # operator.heads is searched and derived: named once
    longer = tmp_path / "longer.yaml"  # an exploit would change how long the clone's stage trains
    longer.write_text("reference:\n  stages.operator.epochs: 30\nparams:\n"
                      "  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-4, high: 3.0e-3}\n"
                      "  stages.operator.epochs: {dist: choice, values: [30, 40]}\n"
                      "derived:\n  stages.diff_residual.epochs: {rule: scale, of: stages.operator.epochs, factor: 0.1}\n")
    with pytest.raises(ConfigError, match=r"longer.yaml: scheduler.name=pbt cannot search stages.diff_residual.epochs, "
                                          r"stages.operator.epochs: .*Fix: fix them"):
        prepare("round_a", [f"space={longer}", "scheduler.name=pbt", f"storage_path={tmp_path}"])
    prepare("round_a", [f"space={longer}", f"storage_path={tmp_path}"])  # ASHA compares training lengths
    # stochastic depth is a model key that shapes no weight: PBT may perturb it (it was refused as a "model shape")
    depth = tmp_path / "depth.yaml"
    depth.write_text("params:\n  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-4, high: 3.0e-3}\n"
                     "  operator.drop_path: {dist: uniform, low: 0.0, high: 0.2}\n")
    p = prepare("round_a", [f"space={depth}", "scheduler.name=pbt", f"storage_path={tmp_path}"])
    assert set(p.space.pbt_mutations()) == {"stages.operator.optimizer.lr", "operator.drop_path"}
    # round A's knobs train in the operator stage, iterations 10-40 of the smoke profile: an interval of 30
    # left PBT nothing to perturb, and the sweep ran as random search
    with pytest.raises(ConfigError, match=r"perturbation_interval=30: PBT perturbs round_a.yaml's knobs from "
                                          r"iteration 10 .* stops at iteration 40 .* Fix: scheduler.perturbation_interval=7"):
        prepare("round_a", ["scheduler.name=pbt", "scheduler.perturbation_interval=30", f"storage_path={tmp_path}"])
    prepare("round_a", ["scheduler.name=pbt", "scheduler.perturbation_interval=29", f"storage_path={tmp_path}"])
    # a population of one (two trials, one the reference PBT leaves out): nothing to exploit, random search
    with pytest.raises(ConfigError, match=r"scheduler.name=pbt with num_samples=2: a population of 1 \(the reference "
                                          r"trial, which PBT leaves out of it, is the other\).*Fix: num_samples=3"):
        prepare("round_a", ["scheduler.name=pbt", "num_samples=2", f"storage_path={tmp_path}"])
    prepare("round_a", ["scheduler.name=pbt", "num_samples=2", "searcher.start_at_reference=false",
                        f"storage_path={tmp_path}"])


def test_round_b_smoke(ray_session, tiny_data, tiny_cache_dir, work) -> None:
    assert script("round_b")(tiny(work, tiny_cache_dir, "wandb.enabled=false", "write_report=false")) == 0
    rows = trial_rows(work, latest_experiment(work, "round_b"))
    assert len(rows) == 2 and set(rows["status"]) <= TERMINAL
    for cj in rows["config_json"]:
        op = json.loads(cj)["operator"]
        assert op["hidden_dim"] % op["heads"] == 0 and op["hidden_dim"] % op["group_size"] == 0


def test_dims_smoke_reports_with_and_without_ttc(ray_session, tiny_data, tiny_cache_dir, tmp_path, capsys) -> None:
    """Two dims × two training seeds (num_samples=4: the grid's second pass trains with the next seed). Its own
    leaderboard and champion: it promotes, and the module's other sweeps count full-evals and champions."""
    grid = tmp_path / "dims.yaml"
    grid.write_text((REPO / "search_spaces" / "dims.yaml").read_text().replace("[8, 16, 24, 32, 64]", "[8, 16]")
                    .replace("latent.dim: 32", "latent.dim: 8"))
    assert script("dims")(tiny(tmp_path, tiny_cache_dir, f"space={grid}", "wandb.enabled=false", "write_report=false",
                               "promotion.force=true", "num_samples=4")) == 0
    rows = trial_rows(tmp_path, latest_experiment(tmp_path, "dims"))
    # the promotion reads the passes as each dim's seeds: the promoted dim's full-eval scores both of its seeds
    lb = read_leaderboard(tmp_path / "leaderboard.csv")
    promoted = lb[lb["kind"] == "full_eval"].dropna(subset=["seed_mean"])
    assert len(promoted) == 1 and len(json.loads(promoted["seed_scores"].iloc[0])) == 2, lb[["run_id", "kind"]]
    sampled = [json.loads(s) for s in rows["sampled_json"]]
    assert sorted((s["latent.dim"], s["training.seed"]) for s in sampled) == [(8, 0), (8, 1), (16, 0), (16, 1)]
    assert sorted(json.loads(c)["training"]["seed"] for c in rows["config_json"]) == [0, 0, 1, 1]
    assert rows["nrmse"].notna().all() and rows["nrmse_ttc"].notna().all()  # FIFO: every dim evaluated
    for dim in (8, 16):  # another seed trains another model
        own = rows[[s["latent.dim"] == dim for s in sampled]]
        assert own["val_nrmse"].nunique() == 2, own[["run_id", "val_nrmse"]]
    for _, r in rows.iterrows():  # per-test-sample figures whose means are the leaderboard's nRMSEs
        per = json.loads(r["eval_samples_json"])
        assert len(per["nrmse"]) == len(per["nrmse_ttc"]) > 1
        assert np.mean(per["nrmse"]) == pytest.approx(r["nrmse"], rel=1e-5)
        assert np.mean(per["nrmse_ttc"]) == pytest.approx(r["nrmse_ttc"], rel=1e-5)
    out = capsys.readouterr().out
    assert "TTC gain" in out and "dims: does TTC help small models more? " in out and "(2 seeds)" in out
    assert "4 (grid: 2 points × 2 training seeds) trials" in out
    verdict = json.loads(next(tmp_path.rglob("ttc_by_dim_*.json")).read_text())
    assert verdict["answer"] == "too few test samples"  # eval.max_samples=4 here
    assert [(d["dim"], d["seeds"]) for d in verdict["dims"]] == [(8, 2), (16, 2)]
    assert all(d["n_samples"] > 1 for d in verdict["dims"])
    for d in verdict["dims"]:  # each dim's autoencoder round trip, the mean over its two seeds' trials
        own = rows[[s["latent.dim"] == d["dim"] for s in sampled]]
        assert d["recon_nrmse"] == pytest.approx(own["recon_nrmse"].astype(float).mean()) and d["recon_nrmse"] > 0
    assert "round trip=" in out
    from tests.test_pickled_names import assert_released

    assert_released(tmp_path / "runs" / latest_experiment(tmp_path, "dims"))  # the grid searcher's state
    # with TTC off there is no "with TTC" to compare: refused before any compute, naming the round to use
    with pytest.raises(ConfigError, match=r"dims: ttc.enabled=false, .* Fix: .*sweeps/round_b.py "
                                          r"space=search_spaces/dims.yaml searcher.name=grid"):
        script("dims")(tiny(tmp_path, tiny_cache_dir, f"space={grid}", "ttc.enabled=false", "name=dims-no-ttc"))
    assert not (tmp_path / "runs" / "dims-no-ttc").exists()


def aggressive_args(work: Path, cache: Path, folder: Path, name: str) -> list[str]:
    """The aggressive round on one trial: the round's reference config (the capacity choices are covered by
    test_space); latent.dim stays the tiny data's 8 (the round's 32/48 would refuse it as a reference and train
    10× longer: its space, without that line, is written to ``folder``)."""
    space = folder / "aggressive.yaml"
    space.write_text("".join(line for line in (REPO / "search_spaces" / "aggressive.yaml").read_text()
                             .splitlines(keepends=True) if not line.lstrip().startswith("latent.dim:")))
    args = tiny(work, cache, "wandb.enabled=false", "write_report=false", "scheduler.name=fifo",
                "num_samples=1", "gates.enabled=false", f"space={space}", f"name={name}")
    swept = ("ttc.candidates=", "ttc.beam_width=")  # aggressive sweeps them: an override of a swept key is refused
    return [a for a in args if not a.startswith(swept)]


@pytest.fixture
def champion(ray_session, tiny_data, tiny_cache_dir, work, tmp_path) -> dict:
    """The champion rounds C and D start from: the one test_aggressive_forces_full_eval_and_crowns_champion
    crowned in ``work``, or (those tests run without it, e.g. ``-k round_c``) one crowned here the same way."""
    if not (work / "champion.json").exists():
        args = aggressive_args(work, tiny_cache_dir, tmp_path, "aggressive-crowned")
        assert script("aggressive")([*args, "promotion.beat_baselines=false"]) == 0
    return json.loads((work / "champion.json").read_text())


def test_aggressive_forces_full_eval_and_crowns_champion(ray_session, tiny_data, tiny_cache_dir, work,
                                                        tmp_path, capsys) -> None:
    args = aggressive_args(work, tiny_cache_dir, tmp_path, "aggressive-forced")
    assert script("aggressive")(args) == 0
    lb = read_leaderboard(work / "leaderboard.csv")
    full = lb[lb["kind"] == "full_eval"]
    assert len(full) == 1 and full["nrmse_ttc"].notna().all()
    # the full-eval row costs the evaluation, not the training again (the trial's row has that): a sum of the
    # column counted every promoted trial twice. Not compared by size: on a loaded machine the evaluation can
    # take longer than the 2-epoch trial did (8–28 s against 4 s seen), a copy of the trial's figure is what fails
    trained = lb.set_index("run_id").loc[full.iloc[0]["source_run_id"]]
    assert 0 < full.iloc[0]["wall_clock"] != trained["wall_clock"] and full.iloc[0]["gpu_hours"] == 0
    # a 2-epoch model is forced to its full-eval but is no better than the sweep's best baseline: not crowned
    bases = lb[lb["kind"] == "baseline"].set_index("label")["nrmse"]
    assert full.iloc[0]["nrmse_ttc"] >= bases.min()
    assert not (work / "champion.json").exists()
    out = capsys.readouterr().out
    assert (f"no champion crowned: the best candidate {full.iloc[0]['source_run_id']} scored "
            f"{full.iloc[0]['nrmse_ttc']:.4g}") in out
    # the round searches TTC keys: its trials carry (and its summary shows) the val nRMSE with TTC TPE was told
    trial = lb[(lb["experiment"] == "aggressive-forced") & (lb["kind"] == "trial")].iloc[0]
    assert trial["val_nrmse_ttc"] > 0 and f"aggressive: val_nrmse_ttc={trial['val_nrmse_ttc']!s:<10.8}" in out, out
    # the same round resumed (the promotion redone without training) with the bar lifted crowns it
    assert script("aggressive")([*args, "resume=true", "promotion.beat_baselines=false"]) == 0
    champ = json.loads((work / "champion.json").read_text())
    lb = read_leaderboard(work / "leaderboard.csv")
    assert champ["full_eval_run_id"] == full.iloc[0]["run_id"] and Path(champ["checkpoint"]).exists()
    assert champ["config"]["latent"]["dim"] == 8 and champ["baseline_bar"] is None
    assert set(lb[lb["run_id"].isin([champ["run_id"], champ["full_eval_run_id"]])]["promotion"]) == {"champion"}


def test_round_c_searches_around_the_champion(ray_session, tiny_data, tiny_cache_dir, work, champion) -> None:
    lr0 = champion["config"]["stages"]["operator"]["optimizer"]["lr"]
    assert script("round_c")(tiny(work, tiny_cache_dir, "wandb.enabled=false", "write_report=false", "promotion.top_k=0")) == 0
    rows = trial_rows(work, latest_experiment(work, "round_c"))
    assert len(rows) == 2
    for s in rows["sampled_json"]:
        lr = json.loads(s)["stages.operator.optimizer.lr"]
        assert 0.8 * lr0 - 1e-12 <= lr <= 1.2 * lr0 + 1e-12


def test_round_d_refines_from_the_champion(ray_session, tiny_data, tiny_cache_dir, work, tmp_path,
                                           champion) -> None:
    """Round D starts from the champion (its values are the first trial) and searches stochastic depth, TTC
    reward weights and the latent size; a champion outside the space's ranges is refused before Ray."""
    champ = champion["config"]
    common = tiny(work, tiny_cache_dir, "wandb.enabled=false", "write_report=false", "promotion.top_k=0")
    from ups.config import ConfigError

    with pytest.raises(ConfigError, match="reference.latent.dim") as refused:  # the tiny champion's 8: not 32/48/64
        script("round_d")(common)
    assert "the champion's config" in str(refused.value) and "space=<copy.yaml>" in str(refused.value)
    space = tmp_path / "round_d.yaml"
    dim, tokens = champ["latent"]["dim"], champ["latent"]["tokens"]
    space.write_text((REPO / "search_spaces" / "round_d.yaml").read_text()
                     .replace("values: [32, 48, 64]", f"values: [{dim}, 16]")
                     .replace("values: [16, 32, 48, 64]", f"values: [{tokens}, {2 * tokens}]"))
    assert script("round_d")([*common, f"space={space}"]) == 0
    rows = trial_rows(work, latest_experiment(work, "round_d"))
    assert len(rows) == 2
    sampled = {r["tags"]: json.loads(r["sampled_json"]) for _, r in rows.iterrows()}
    ref = next(v for k, v in sampled.items() if "reference" in str(k))
    assert ref["operator.drop_path"] == champ["operator"]["drop_path"] and ref["latent.dim"] == dim
    assert ref["ttc.weights.mass"] == champ["ttc"]["weights"]["mass"]
    for s in sampled.values():
        assert 0.0 <= s["operator.drop_path"] <= 0.2 and 0.5 <= s["ttc.weights.mass"] <= 3.0


def test_promotion_seeds_crowns_on_the_seed_mean(ray_session, tiny_data, tiny_cache_dir, work, tmp_path) -> None:
    """promotion.seeds=1: each promoted configuration is retrained with training seed 1 (a second Tune
    experiment with leaderboard rows), every run gets a full-eval, the champion is the best two-seed mean."""
    lb_path, champ_path = tmp_path / "lb.csv", tmp_path / "champion.json"
    args = tiny(work, tiny_cache_dir, "wandb.enabled=false", "write_report=false", "scheduler.name=fifo",
                "gates.enabled=false", "promotion.top_k=2", "promotion.force=true",
                "promotion.beat_baselines=false",  # tiny models
                "promotion.seeds=1", f"leaderboard={lb_path}", f"champion={champ_path}")
    assert script("round_a")(args) == 0
    lb = read_leaderboard(lb_path)
    exp = latest_experiment(work, "round_a")
    trials = lb[(lb["experiment"] == exp) & (lb["kind"] == "trial")]
    retrains = lb[(lb["experiment"] == f"seeds-{exp}") & (lb["kind"] == "trial")]
    assert len(trials) == 2 and len(retrains) == 2 and set(retrains["status"]) == {"completed"}

    def searched(sampled: str) -> str:
        return json.dumps({k: v for k, v in json.loads(sampled).items() if k != "training.seed"}, sort_keys=True)

    assert sorted(map(searched, retrains["sampled_json"])) == sorted(map(searched, trials["sampled_json"]))
    assert {json.loads(c)["training"]["seed"] for c in retrains["config_json"]} == {1}
    assert {json.loads(c)["training"]["seed"] for c in trials["config_json"]} == {0}
    full = lb[lb["kind"] == "full_eval"].set_index("source_run_id")
    assert set(full.index) == set(trials["run_id"]) | set(retrains["run_id"])
    champ = json.loads(champ_path.read_text())
    means = {}
    for rid in trials["run_id"]:
        ids = full.loc[rid, "seed_run_ids"].split(";")
        assert ids[0] == rid and len(ids) == 2 and ids[1] in set(retrains["run_id"])
        scores = [full.loc[i, "nrmse_ttc"] for i in ids]
        assert json.loads(full.loc[rid, "seed_scores"]) == pytest.approx(scores, abs=1e-6)
        means[rid] = sum(scores) / 2
        assert full.loc[rid, "seed_mean"] == pytest.approx(means[rid])
    assert champ["run_id"] == min(means, key=means.get)
    assert champ["seed_mean"] == pytest.approx(min(means.values())) and len(champ["seed_scores"]) == 2
    # resume=true of the finished round restores the seeds experiment too: nothing retrained, nothing doubled
    assert script("round_a")([*args, "resume=true", f"name={exp}"]) == 0
    again = read_leaderboard(lb_path)
    assert len(again) == len(lb) and again["run_id"].is_unique
    assert set(again[(again["experiment"] == f"seeds-{exp}") & (again["kind"] == "trial")]["run_id"]) == \
        set(retrains["run_id"])
    assert json.loads(champ_path.read_text())["run_id"] == champ["run_id"]
    # a driver killed as the retrain started, between Tune's tuner.pkl and its first state (no row yet): every
    # resume failed to restore that folder (Tune: no experiment state); it now retrains there from the start
    seeds_dir = work / "runs" / f"seeds-{exp}"
    assert (seeds_dir / "tuner.pkl").exists()
    for f in seeds_dir.glob("experiment_state-*.json"):
        f.unlink()
    again[again["experiment"] != f"seeds-{exp}"].to_csv(lb_path, index=False)
    assert script("round_a")([*args, "resume=true", f"name={exp}"]) == 0
    third = read_leaderboard(lb_path)
    assert third["run_id"].is_unique
    assert len(third[(third["experiment"] == f"seeds-{exp}") & (third["kind"] == "trial")]) == 2


def test_stage_cache_reuses_the_autoencoder_bit_for_bit(ray_session, tiny_data, tiny_cache_dir, work, tmp_path) -> None:
    """Round A searches operator knobs only: with stage_cache on, trials after the first replay the
    autoencoder stage's reports and resume from its checkpoint; every trial ends exactly where it ends
    without the cache (same TPE suggestions, same val nRMSE to the last bit), at the same iterations."""
    from ups.reports.experiment import load_experiment

    runs = {}
    for flag in ("false", "true"):
        name = f"stage-cache-{flag}"
        assert script("round_a")(tiny(work, tiny_cache_dir, "wandb.enabled=false", "write_report=false",
                                      "scheduler.name=fifo", "gates.enabled=false", "promotion.top_k=0",
                                      "baselines=false", "num_samples=3", "max_concurrent=1",
                                      "stages.autoencoder.epochs=2", f"stage_cache={flag}", f"name={name}",
                                      f"leaderboard={tmp_path / 'lb.csv'}")) == 0
        runs[flag] = load_experiment(work / "runs" / name)
        assert not scratch_root(name, str(work / "runs")).exists()  # the cache goes with the experiment's scratch
    keep = ["training_iteration", "stage", "epoch", "val_nrmse", "train_loss"]

    def curves(exp) -> dict[str, object]:  # sampled config → its curve
        return {json.dumps(t.config, sort_keys=True): t.history.sort_values("training_iteration")[keep]
                .reset_index(drop=True) for t in exp.trials}

    off, on = curves(runs["false"]), curves(runs["true"])
    assert len(off) == 3 and off.keys() == on.keys()  # same TPE suggestions
    for cfg, curve in off.items():
        assert curve.equals(on[cfg]), (cfg, curve, on[cfg])  # bit-identical curves, replayed stage included
    on = runs["true"].histories()
    cached = on[on.get("stage_cached", 0).fillna(0) == 1]
    assert set(cached["stage"]) == {"autoencoder"} and cached["trial_id"].nunique() == 2  # trials 2 and 3
    assert (cached["time_this_iter_s"] < 0.5).all()


def test_round_c_without_champion_says_what_to_run(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no champion yet.*run round_a or round_b first"):
        script("round_c")([f"champion={tmp_path / 'none.json'}", f"storage_path={tmp_path / 'runs'}"])
    assert not (tmp_path / "runs").exists()


def test_kill_9_then_resume_loses_and_duplicates_nothing(ray_session, tiny_data, tiny_cache_dir, tmp_path) -> None:
    args = tiny(tmp_path, tiny_cache_dir, "wandb.enabled=false", "write_report=false", "num_samples=2", "max_concurrent=1",
                "scheduler.name=fifo", "promotion.top_k=0", "baselines=false", "ray_num_cpus=1")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_ADDRESS": "", "PYTHONPATH": str(REPO)}
    log = (tmp_path / "driver.log").open("w")
    proc = subprocess.Popen([sys.executable, "sweeps/round_a.py", *args], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    lb_path = tmp_path / "leaderboard.csv"
    try:
        deadline = time.time() + 400
        while time.time() < deadline and proc.poll() is None:
            if lb_path.exists() and (read_leaderboard(lb_path)["kind"] == "trial").sum() >= 1:
                break
            time.sleep(0.5)
        tail = (tmp_path / "driver.log").read_text()[-3000:]
        assert proc.poll() is None, f"the sweep ended before it could be killed:\n{tail}"
        assert (read_leaderboard(lb_path)["kind"] == "trial").sum() >= 1, f"no trial finished in time:\n{tail}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        proc.wait()
    before = read_leaderboard(lb_path)
    assert len(before) < 2
    exp = latest_experiment(tmp_path, "round_a")
    assert script("round_a")([*args, "resume=true"]) == 0
    rows = trial_rows(tmp_path, exp)
    assert len(rows) == 2 and rows["run_id"].is_unique and rows["trial_id"].is_unique
    assert set(rows["status"]) <= TERMINAL
    assert set(before["run_id"]) <= set(rows["run_id"])
    scratch = scratch_root(exp, str(tmp_path / "runs"))  # the killed trial's scratch too
    assert not scratch.exists(), sorted(p.name for p in scratch.iterdir())
    assert not scratch_root(exp).exists()  # the trials wrote where the driver removes (the sweep's storage path)


@pytest.mark.parametrize("name", ["round_a", "round_b", "round_c", "round_d", "aggressive", "dims"])
def test_help_describes_the_round_and_starts_nothing(name: str, capsys) -> None:
    """`python sweeps/<round>.py --help` (and `ups sweep <round> -h`) prints the script's docstring, the
    search space it sweeps and its profile defaults; it used to fail with "'--help' is not key=value"."""
    from ups.tune.cli import main as sweep_main

    space = load_space(REPO / "search_spaces" / f"{name}.yaml")
    for flag in ("--help", "-h", "help"):
        assert sweep_main([name, flag]) == 0
        out = capsys.readouterr().out
        doc = ast.get_docstring(ast.parse((REPO / "sweeps" / f"{name}.py").read_text())).splitlines()[0]
        assert out.splitlines()[0] == doc, out[:200]
        assert f"search_spaces/{name}.yaml" in out and all(f"  {k} " in out for k in space.params), out
        assert all(f"  {k} = " in out for k in space.derived), out
        assert "profile=full defaults: " in out and "docs/SWEEPS.md" in out
        if name == "round_c":  # the round's own searcher settings, not just its name (they hid n_startup_trials: 2)
            assert "Engine: searcher.name=optuna, searcher.n_startup_trials=2, scheduler.name=asha" in out, out
    if name == "round_d":  # the script itself, as users run it (one round: a subprocess costs ~2 s)
        run = subprocess.run([sys.executable, str(REPO / "sweeps" / f"{name}.py"), "--help"], capture_output=True,
                             text=True, timeout=120, cwd=REPO)
        assert run.returncode == 0 and run.stdout.splitlines()[0] == doc, run.stderr[-500:]


def _docs_round_recipe() -> str:
    """The 'A round of your own' script of docs/SWEEPS.md, as users copy it."""
    import re

    text = (REPO / "docs" / "SWEEPS.md").read_text()
    return re.search(r"### A round of your own.*?```python\n(.*?)```", text, re.S).group(1)


def test_the_docs_recipe_for_a_round_of_your_own_runs(ray_session, tiny_data, tiny_cache_dir, work, tmp_path,
                                                      capsys) -> None:
    """docs/SWEEPS.md shows how to write a round: that script, copied into a file, runs a sweep whose rows carry
    its round, and its --help works, with or without a ROUND constant (the file's name is the round then:
    before, --help printed 'Sweep round .' and looked for search_spaces/.yaml)."""
    from ups.tune.cli import round_help

    code = _docs_round_recipe()
    path = tmp_path / "my_round.py"
    path.write_text(code)
    mod = load_file(path, "my_round")
    assert mod.main(tiny(work, tiny_cache_dir, f"space={REPO / 'search_spaces' / 'round_a.yaml'}", "num_samples=1",
                         "wandb.enabled=false", "write_report=false")) == 0
    rows = trial_rows(work, latest_experiment(work, "my_round"))
    assert len(rows) == 1 and set(rows["round"]) == {"my_round"}
    # --help of a script without ROUND: the round is the file's name (here the file is named round_b.py)
    bare = tmp_path / "round_b.py"
    bare.write_text(code.replace('ROUND = "my_round"', "").replace("run_round(ROUND,", 'run_round("round_b",'))
    mod = load_file(bare, "bare_round_b")
    out = round_help(mod.main)
    assert out.splitlines()[0].startswith("My round:") and "search_spaces/round_b.yaml" in out, out
    assert "operator.hidden_dim" in out and "cannot be read" not in out


def test_a_warm_started_sweep_tells_tpe_the_earlier_sweeps_finished_trials(ray_session, tiny_data, tiny_cache_dir,
                                                                          tmp_path, capsys, monkeypatch) -> None:
    """"8 more trials of round A": resume=true refuses another num_samples, so a new sweep's TPE learned the
    space from scratch. searcher.warm_start=latest tells it the previous sweep's finished trials first."""
    import pickle

    from ups.config import ConfigError
    from ups.tune.launcher import run_round

    first = tiny(tmp_path, tiny_cache_dir, "wandb.enabled=false", "write_report=false", "scheduler.name=fifo",
                 "name=round_a-20261201-000000")
    assert script("round_a")(first) == 0
    done = trial_rows(tmp_path, "round_a-20261201-000000")
    assert len(done) == 2 and done["val_nrmse"].notna().all()
    capsys.readouterr()
    second = tiny(tmp_path, tiny_cache_dir, "wandb.enabled=false", "write_report=false", "num_samples=1",
                  "searcher.warm_start=latest", "searcher.n_startup_trials=2", "promotion.top_k=0")
    assert script("round_a")(second) == 0
    out = capsys.readouterr().out
    assert "warm start: TPE told 2 finished trial(s) of round_a-20261201-000000" in out, out[-2000:]
    exp = latest_experiment(tmp_path, "round_a")
    assert exp != "round_a-20261201-000000"
    # the study Tune saved with the second sweep holds the first sweep's two trials, with their val_nrmse
    (state,) = (tmp_path / "runs" / exp).glob("searcher-state-*.pkl")
    with open(state, "rb") as f:
        study = pickle.load(f)["_ot_study"]  # OptunaSearch.save: its __dict__
    told = [t for t in study.trials if t.value is not None and t.number in (1, 2)]  # 0: the queued reference
    assert sorted(round(t.value, 6) for t in told) == sorted(done["val_nrmse"].round(6)), \
        [(t.number, t.state, t.value) for t in study.trials]
    assert len([t for t in study.trials if t.value is not None]) == 3  # the two told, and this sweep's one trial
    # refused before Ray work: another searcher; a sweep of another base config; no such sweep
    with pytest.raises(ConfigError, match="only Optuna's TPE can be told earlier trials"):
        run_round("round_a", [*second, "searcher.name=random"])
    with pytest.raises(ConfigError, match=r"another base config \(stages.operator.epochs: 2 → 3"):
        run_round("round_a", [*second, "stages.operator.epochs=3"])
    with pytest.raises(ConfigError, match="no sweep of that name"):
        run_round("round_a", [*second, "searcher.warm_start=round_a-19990101-000000"])
    # a space searching lr alone: the earlier sweeps also varied the warmup, EMA decay and betas this one holds
    # fixed, so their scores mix those values (they were told to TPE as if they did not)
    lr_only = tmp_path / "lr_only.yaml"
    lr_only.write_text("params:\n  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-4, high: 3.0e-3}\n")
    with pytest.raises(ConfigError, match=r"that sweep also searched stages.operator.ema_decay, "
                                          r"stages.operator.optimizer.betas, stages.operator.warmup_steps_ratio"):
        run_round("round_a", [*second, f"space={lr_only}"])
    narrow = tmp_path / "narrow.yaml"  # neither sweep has a finished trial with lr in it
    narrow.write_text((REPO / "search_spaces" / "round_a.yaml").read_text().replace(
        "{dist: loguniform, low: 1.0e-4, high: 3.0e-3}", "{dist: loguniform, low: 3.5e-3, high: 5.0e-3}").replace(
        "stages.operator.optimizer.lr: 3.0e-4", "stages.operator.optimizer.lr: 4.0e-3"))
    with pytest.raises(ConfigError, match=rf"warm_start=latest: no trial of {exp} reached its final evaluation .*"
                                          rf"resume=true name={exp}.*one of round_a-20261201-000000"):
        run_round("round_a", [*second, f"space={narrow}"])
    # a sweep on data the generator now makes otherwise (its record names the data version): refused before data
    import ups.data.cache as cache

    monkeypatch.setattr(cache, "DATA_VERSION", "test-other")
    with pytest.raises(ConfigError, match=rf"searcher.warm_start={exp}: that sweep ran on UPS Sweeps commit .*"
                                          r"\(data version 2\).*this code's \(data version test-other"):
        run_round("round_a", second)


def test_a_sweep_searching_ttc_keys_tells_tpe_the_val_nrmse_with_ttc(ray_session, tiny_data, tiny_cache_dir,
                                                                       tmp_path) -> None:
    """ttc.* keys act only through TTC, and the per-epoch val_nrmse is a plain rollout: TPE was told a figure those
    keys cannot move (round C's ±20 % TTC threshold, the aggressive round's TTC budget, round D's reward weights
    were searched blind). A trial's final report now carries its val nRMSE with TTC, and a sweep that searches
    ttc.* keys tells Optuna that one; ASHA keeps the plain val_nrmse."""
    import pickle

    space = tmp_path / "ttc.yaml"  # threshold ~0: TTC searches at every step, so the two figures differ
    space.write_text("reference:\n  ttc.threshold: 0.0\nparams:\n  ttc.threshold: {dist: uniform, low: 0.0, high: 0.001}\n")
    assert script("round_a")(tiny(tmp_path, tiny_cache_dir, "wandb.enabled=false", "write_report=false",
                                  "scheduler.name=fifo", "promotion.top_k=0", f"space={space}",
                                  "ttc.candidates=4", "ttc.beam_width=2")) == 0
    exp = latest_experiment(tmp_path, "round_a")
    rows = trial_rows(tmp_path, exp)
    assert len(rows) == 2 and rows["val_nrmse_ttc"].notna().all() and rows["val_nrmse"].notna().all()
    assert (rows["val_nrmse_ttc"] != rows["val_nrmse"]).all(), rows[["val_nrmse", "val_nrmse_ttc"]]
    (state,) = (tmp_path / "runs" / exp).glob("searcher-state-*.pkl")
    with open(state, "rb") as f:
        saved = pickle.load(f)
    assert saved["_metric"] == "val_objective"
    told = sorted(round(t.value, 6) for t in saved["_ot_study"].trials if t.value is not None)
    assert told == sorted(rows["val_nrmse_ttc"].round(6)), (told, rows[["val_nrmse", "val_nrmse_ttc"]])
    for f in (tmp_path / "runs" / exp).glob("trial_*/result.json"):  # every report carries what Optuna reads
        reports = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        assert all("val_objective" in r for r in reports)
        assert [r["val_objective"] for r in reports[:-1]] == [r["val_nrmse"] for r in reports[:-1]]
        assert reports[-1]["val_objective"] == reports[-1]["val_nrmse_ttc"]


def test_a_resume_on_data_the_generator_now_makes_otherwise_is_refused(ray_session, tiny_data, tiny_cache_dir,
                                                                       tmp_path, monkeypatch) -> None:
    """DATA_VERSION 2 changed the data the same data.* settings give; a sweep started on version 1 resumed on
    version 2 without a word: its unfinished trials would go on, and new ones start, on other data than its
    finished trials were scored on, all under one experiment."""
    import ups.data.cache as cache

    args = tiny(tmp_path, tiny_cache_dir, "wandb.enabled=false", "write_report=false", "scheduler.name=fifo",
                "promotion.top_k=0", "num_samples=1", "name=round_a-20261201-000000")
    assert script("round_a")(args) == 0
    before = set(trial_rows(tmp_path, "round_a-20261201-000000")["data_hash"])
    monkeypatch.setattr(cache, "DATA_VERSION", "test-other")
    from ups.code_version import code_version

    commit = code_version()["commit"].removesuffix("-dirty")
    lb_before = (tmp_path / "leaderboard.csv").read_bytes()
    # the sweep's record names the code and its data version: refused before any data is made, with the checkout
    with pytest.raises(ConfigError, match=r"resume=true: .*round_a-20261201-000000 was started by UPS Sweeps commit "
                                          rf".*\(data version 2\).*this code generates data version test-other.*"
                                          rf"Fix: resume with the code it started with \(git checkout {commit}, then"):
        script("round_a")([*args, "resume=true"])
    assert (tmp_path / "leaderboard.csv").read_bytes() == lb_before  # no baseline row rewritten
    # a record from before the code was kept: found once the data is made (the data's hash on the leaderboard)
    record = tmp_path / "runs" / "round_a-20261201-000000" / "ups_sweep.json"
    saved = json.loads(record.read_text())
    record.write_text(json.dumps({k: v for k, v in saved.items() if k != "code"}))
    with pytest.raises(ConfigError, match=r"resume=true: the trials of round_a-20261201-000000 were trained and "
                                          r"scored on data .*Fix: resume with the code and data it started with"):
        script("round_a")([*args, "resume=true"])
    assert set(trial_rows(tmp_path, "round_a-20261201-000000")["data_hash"]) == before


def test_a_warm_start_from_trials_on_other_data_is_refused(tmp_path) -> None:
    """A sweep recorded before its record kept the data version, whose trials the leaderboard says were scored on
    other data: TPE was told their scores without a word (the upgrade trial). eval.max_samples, which changes no
    val_nrmse, no longer refuses a warm start as 'another base config'."""
    from ups.tune.warm_start import _base_differences, check_warm_data

    lb = tmp_path / "lb.csv"
    lb.write_text("run_id,experiment,kind,nrmse,data_hash\n"
                  "round_a-x-1,round_a-x,trial,0.1,0123456789abcdef\nbaseline-fno,,baseline,0.2,abcdef1234567890\n")
    assert check_warm_data(lb, "round_a-x", "0123456789abcdef") is None
    with pytest.raises(ConfigError, match=r"searcher.warm_start=round_a-x: that sweep's trials were scored on data "
                                          r"0123456789ab .*this sweep's data is abcdef123456.*Fix: warm-start from"):
        check_warm_data(lb, "round_a-x", "abcdef1234567890")
    assert check_warm_data(lb, "round_a-y", "abcdef1234567890") is None  # no rows of that sweep: nothing to compare
    a = {"eval.max_samples": 8, "stages.operator.epochs": 2, "run.label": "x"}
    assert _base_differences(a, {**a, "eval.max_samples": -1, "run.label": "y"}, set()) == []
    assert _base_differences(a, {**a, "stages.operator.epochs": 3}, set()) == ["stages.operator.epochs: 2 → 3"]


def test_resume_data_check_with_no_data_hash_column_on_the_leaderboard(tmp_path) -> None:
    """A resume whose leaderboard does not exist (leaderboard= changed since the sweep started, or the file was
    removed) or predates the data_hash column has nothing to compare: it goes on, not a KeyError on data_hash."""
    from ups.tune.prepare import check_resume_data

    assert check_resume_data(tmp_path / "new-lb.csv", "round_a-x", "abcdef1234567890") is None
    assert not (tmp_path / "new-lb.csv").exists()  # nothing written to compare later
    old = tmp_path / "old-lb.csv"
    old.write_text("run_id,experiment,kind,nrmse\nround_a-x-1,round_a-x,trial,0.1\n")
    assert check_resume_data(old, "round_a-x", "abcdef1234567890") is None
    # with the column, the same call on other data is refused: the two calls above went on for want of it
    old.write_text("run_id,experiment,kind,nrmse,data_hash\nround_a-x-1,round_a-x,trial,0.1,0123456789abcdef\n")
    with pytest.raises(ConfigError, match="resume=true"):
        check_resume_data(old, "round_a-x", "abcdef1234567890")
    # the same data goes on: the leaderboard keeps a hash's first 12 characters, the command's data its whole hash
    assert check_resume_data(old, "round_a-x", "0123456789abcdef") is None
