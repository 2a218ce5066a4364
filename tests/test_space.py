"""Search-space files and sweep overrides: validated before Ray starts, errors name file, key and fix."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import re
from pathlib import Path

import pytest

from ups.config import ConfigError, apply_overrides, load_config
from ups.tune.space import SearchSpaceError, derive, load_space, resolve_around
from ups.tune.sweep_config import load_sweep_config, split_overrides

REPO = Path(__file__).resolve().parents[1]
SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))


@pytest.fixture(scope="module")
def base():
    return load_config(["preset=dim8"])


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_shipped_spaces_are_valid(path: Path, base) -> None:
    if path.stem == "round_d":  # its reference is the champion's config, a dim-32 model or larger (not dim8)
        base = load_config([])
    space = load_space(path, base)
    if any(p.dist == "around" for p in space.params.values()):
        space = resolve_around(space, base)
    point = space.reference_point(base)
    cfg, values = space.materialize(base, point)
    assert set(space.params) <= set(values)
    assert cfg.operator.hidden_dim % cfg.operator.heads == 0


@pytest.mark.parametrize("text, needles", [
    ("params:\n  stages.operator.optimizer.lrr: {dist: uniform, low: 0.1, high: 0.2}\n",
     ["params.stages.operator.optimizer.lrr", "unknown config key", "Did you mean 'stages.operator.optimizer.lr'"]),
    ("params:\n  ttc.threshold: {dist: uniform, low: 0.5, high: 0.2}\n",
     ["params.ttc.threshold", "low = 0.5 must be below high = 0.2"]),
    ("params:\n  ttc.threshold: {dist: uniform, low: 0.2, high: 0.2}\n",  # an empty range: one value, no search
     ["params.ttc.threshold", "low = 0.2 must be below high = 0.2"]),
    ("params:\n  ttc.candidates: {dist: choice, values: []}\n",
     ["params.ttc.candidates", "non-empty 'values'"]),
    ("params:\n  stages.operator.optimizer.lr: {dist: loguniform, low: 0, high: 1.0e-3}\n",
     ["params.stages.operator.optimizer.lr", "loguniform needs low > 0"]),
    ("params:\n  data.nu: {dist: uniform, low: 0.001, high: 0.01}\n",
     ["params.data.nu", "not sweepable", "Sweepable keys include"]),
    ("params:\n  run.out_dir: {dist: choice, values: [a, b]}\n", ["params.run.out_dir", "not sweepable"]),
    ("params:\n  ttc.threshold: {dist: gaussian, low: 0.1, high: 0.2}\n", ["unknown dist 'gaussian'", "Valid: choice"]),
    ("param:\n  ttc.threshold: {dist: uniform, low: 0.1, high: 0.2}\n", ["unknown top-level key", "params"]),
    ("- ttc.threshold\n", ["expected a mapping with 'params:', got list", "Fix: space= a search-space YAML"]),
    ("params: {}\n", ["'params' must be a non-empty mapping", "Fix: e.g. 'params:'"]),
    ("description: [a]\nparams:\n  ttc.threshold: {dist: uniform, low: 0.1, high: 0.2}\n",
     ["description: expected text", "Fix: quote it"]),
    ("params:\n  ttc.candidates: {dist: choice, values: [lots]}\n", ["params.ttc.candidates", "invalid"]),
    ("params:\n  operator.heads: {dist: choice, values: [3]}\n", ["params.operator.heads", "does not divide"]),
    ("params:\n  latent.tokens: {dist: choice, values: [16, 4096]}\n", ["params.latent.tokens", "4096 exceeds the",
                                                                       "grid the encoder reads"]),
    ("params:\n  stages.operator.batch_size: {dist: int, low: 8.5, high: 32}\n",
     ["params.stages.operator.batch_size", "int bounds must be integers (got 8.5, 32). Fix: whole numbers"]),
    ("reference:\n  ttc.threshold: 0.9\nparams:\n  ttc.threshold: {dist: uniform, low: 0.1, high: 0.2}\n",
     ["reference.ttc.threshold", "outside [0.1, 0.2]"]),
    ("reference:\n  ttc.threshold: 0.05\nparams:\n  ttc.threshold: {dist: uniform, low: 0.1, high: 0.2}\n",
     ["reference.ttc.threshold", "outside [0.1, 0.2]"]),  # below the range as well as above it
    ("params:\n  ttc.threshold: {dist: around, rel: 1}\n",  # a fraction of the value, below 1
     ["params.ttc.threshold", "'rel' = 1 must be in (0, 1)"]),
    # no reference section: the value came from the base config, which the message now says
    ("params:\n  stages.operator.optimizer.lr: {dist: choice, values: [0.5, 0.7]}\n",
     ["reference.stages.operator.optimizer.lr", "(the base config's value: the file has no "
      "reference.stages.operator.optimizer.lr) is not one of the choices [0.5, 0.7]", "set reference."]),
    ("params:\n  ttc.threshold: {dist: uniform, low: 0.1, high: 0.2}\n"
     "derived:\n  ttc.beam_width: {rule: magic, of: ttc.candidates}\n", ["derived.ttc.beam_width", "copy, scale"]),
])
def test_bad_spaces_are_refused_naming_file_and_key(tmp_path: Path, base, text: str, needles: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SearchSpaceError) as e:
        load_space(path, base)
    msg = str(e.value)
    assert str(path) in msg
    for n in needles:
        assert n in msg, msg


def test_missing_file_lists_alternatives(tmp_path: Path) -> None:
    """The spaces next to the missing file and the project's own, never a YAML that is not a search space
    (it listed cluster.yaml for space=nope.yaml in the checkout), and the nearest name for a typo."""
    write(tmp_path, "params: {}\n", "other.yaml")
    write(tmp_path, "cluster_name: ups\n", "cluster.yaml")
    with pytest.raises(SearchSpaceError, match="not found.*other.yaml") as e:
        load_space(tmp_path / "nope.yaml")
    msg = str(e.value)
    assert "cluster.yaml" not in msg and "round_a.yaml" in msg and "Fix: space=search_spaces/<name>.yaml" in msg
    assert "Did you mean" not in msg
    with pytest.raises(SearchSpaceError, match=r"Did you mean .*search_spaces/round_b.yaml\?"):
        load_space(REPO / "search_spaces" / "round_bb.yaml")


def test_derived_rules_keep_scaling_consistent(base) -> None:
    space = load_space(REPO / "search_spaces" / "round_b.yaml", base)
    cfg, values = space.materialize(base, {"latent.tokens": 24, "operator.hidden_dim": 80,
                                           "operator.depths": "[2, 2, 2]", "operator.heads": 6})
    assert values["operator.heads"] == 5 and cfg.operator.heads == 5  # 6 does not divide 80 → 5
    assert cfg.operator.group_size == 8 and cfg.decoder.hidden_dim == 80 and cfg.encoder.hidden_dim == 80
    assert list(cfg.operator.depths) == [2, 2, 2]
    dims = load_space(REPO / "search_spaces" / "dims.yaml", base)
    cfg, _ = dims.materialize(base, {"latent.dim": 24})
    assert (cfg.latent.dim, cfg.operator.input_dim, cfg.diffusion.latent_dim) == (24, 24, 24)
    assert cfg.operator.hidden_dim == 48 and 48 % cfg.operator.heads == 0
    assert derive({"operator.heads": {"rule": "divisor", "of": "operator.hidden_dim", "near": 7}}, cfg, "x") == \
        {"operator.heads": 6}
    # a scaled integer is rounded to the nearest, not cut: 16 × 0.16 = 2.56 → 3
    assert derive({"operator.heads": {"rule": "scale", "of": "operator.hidden_dim", "factor": 0.16}}, base, "x") == \
        {"operator.heads": 3}


def test_around_zero_is_held_unless_a_width_is_given(tmp_path: Path, base) -> None:
    # a champion at 0 (lambda_spectral 0, grad_clip 0 = no clipping) is valid: ±20 % of 0 is 0 itself
    path = write(tmp_path, "params:\n  training.lambda_spectral: {dist: around, rel: 0.2}\n"
                           "  stages.operator.grad_clip: {dist: around, rel: 0.2, zero_width: 0.5}\n")
    zero = apply_overrides(base, {"training.lambda_spectral": 0.0, "stages.operator.grad_clip": 0.0})
    held = resolve_around(load_space(path), zero)
    lam, clip = held.params["training.lambda_spectral"], held.params["stages.operator.grad_clip"]
    assert (lam.dist, lam.values) == ("choice", [0.0])
    assert (clip.dist, clip.low, clip.high) == ("uniform", 0.0, 0.5)
    space = resolve_around(load_space(REPO / "search_spaces" / "round_c.yaml"), base)
    lr = space.params["stages.operator.optimizer.lr"]
    assert lr.low == pytest.approx(0.8 * base.stages.operator.optimizer.lr)
    assert lr.high == pytest.approx(1.2 * base.stages.operator.optimizer.lr)


def test_around_a_small_integer_never_reaches_zero(tmp_path: Path, base) -> None:
    """A champion's ttc.beam_width=1 became [0, 2] (round C refused its own champion) and operator epochs 1
    became [0, 2] (a trial drawing 0 skipped the stage): an integer range keeps one step beside the value, above 0."""
    from ups.tune.space import check_against

    path = write(tmp_path, "params:\n  ttc.beam_width: {dist: around, rel: 0.2}\n"
                           "  stages.operator.epochs: {dist: around, rel: 0.2}\n  ttc.candidates: {dist: around, rel: 0.2}\n")
    champ = apply_overrides(base, {"ttc.beam_width": 1, "stages.operator.epochs": 1, "ttc.candidates": 10})
    space = resolve_around(load_space(path), champ)
    got = {k: (p.dist, p.low, p.high) for k, p in space.params.items()}
    assert got == {"ttc.beam_width": ("int", 1, 2), "stages.operator.epochs": ("int", 1, 2),
                   "ttc.candidates": ("int", 8, 12)}
    check_against(space, champ)  # every extreme is a valid config


def test_overrides_split_and_unknown_keys() -> None:
    sweep, trial = split_overrides(["num_samples=3", "resources.gpu=0.25", "trial.stages.operator.epochs=2",
                                    "ttc.threshold=0.3", "preset=dim16"])
    assert sweep == {"num_samples": 3, "resources.gpu": 0.25}
    assert trial == ["stages.operator.epochs=2", "ttc.threshold=0.3", "preset=dim16"]
    with pytest.raises(ConfigError, match="Did you mean 'num_samples'"):
        split_overrides(["num_sample=3"])
    for typed, meant in (("searcher=bohb", "searcher.name"), ("scheduler=pbt", "scheduler.name"),
                         ("gates=false", "gates.enabled"), ("stages.operator.lr=1e-3", "stages.operator.optimizer.lr")):
        with pytest.raises(ConfigError, match=rf"Did you mean '{meant}'"):  # by spelling: searcher.seed, …
            split_overrides([typed])
    s = load_sweep_config("round_a", ["profile=full", "max_concurrent=3"])
    assert s.resources.gpu == 0.25 and s.max_concurrent == 3 and "data.n=2000" in s.trial
    with pytest.raises(ConfigError, match="scheduler.name"):
        load_sweep_config("round_a", ["scheduler.name=hyperband"])
    with pytest.raises(ConfigError, match="unknown profile"):
        load_sweep_config("round_a", ["profile=huge"])
    with pytest.raises(ConfigError, match=r"'resume'.*Fix: give true or false \(now resume=false\)"):
        load_sweep_config("round_a", ["resume=maybe"])
    with pytest.raises(ConfigError, match=r"'num_samples'.*Fix: give an integer \(now num_samples=4\)"):
        load_sweep_config("round_a", ["num_samples=abc"])


def test_an_override_key_is_one_key_however_it_is_typed() -> None:
    """Hydra's ``+`` and stray spaces name the same key everywhere an override is read: the later layer wins
    (``dedupe_overrides``), it is sorted as sweep or trial key, and it counts as given."""
    from ups.config import override_key
    from ups.tune.sweep_config import dedupe_overrides

    assert override_key(" +stages.operator.epochs=3") == "stages.operator.epochs" == override_key("stages.operator.epochs")
    assert override_key("data.path=a=b.h5") == "data.path"
    assert dedupe_overrides(["+ttc.threshold=0.2", "preset=dim16", " ttc.threshold=0.3"]) == ["preset=dim16",
                                                                                                " ttc.threshold=0.3"]
    assert split_overrides([" +num_samples=3", "+ttc.beam_width=2"]) == ({"num_samples": 3}, ["ttc.beam_width=2"])


def test_a_sweep_key_under_the_trial_prefix_is_named_as_one() -> None:
    """``trial.num_samples=3`` went to the UPS config, which suggested 'data.num_samples_max' (a data cap)."""
    with pytest.raises(ConfigError) as e:
        load_sweep_config("round_a", ["trial.num_samples=3"])
    assert str(e.value) == ("overrides: 'trial.num_samples': num_samples is a sweep key, not a model/training key "
                            "(trial. prefixes only those). Fix: num_samples=3"), str(e.value)
    assert "data.num_samples_max" not in str(e.value)


def test_the_trial_list_on_the_command_line_is_read_like_its_items(tmp_path: Path) -> None:
    """``trial=[k=v]`` was appended ahead of every plain trial override (an earlier ``stages.operator.epochs=5``
    beat a later ``trial=[stages.operator.epochs=3]``) and skipped the swept-key check (round A's lr was
    accepted and silently replaced by the space in every trial)."""
    from ups.tune.prepare import prepare

    assert split_overrides(["trial=[stages.operator.epochs=3, ttc.threshold=0.3]"]) == (
        {}, ["stages.operator.epochs=3", "ttc.threshold=0.3"])
    s = load_sweep_config("round_a", ["stages.operator.epochs=5", "trial=[stages.operator.epochs=3]"])
    assert "stages.operator.epochs=3" in s.trial and "stages.operator.epochs=5" not in s.trial
    assert load_sweep_config("round_a", ["trial=stages.operator.epochs=4"]).trial[-1] == "stages.operator.epochs=4"
    runs = tmp_path / "runs"
    with pytest.raises(ConfigError, match=r"stages.operator.optimizer.lr=… \(the command line\) would be replaced"):
        prepare("round_a", [f"storage_path={runs}", "trial=[stages.operator.optimizer.lr=1e-3]"])
    assert not runs.exists()



def test_pbt_alone_takes_random_search_over_the_rounds_default_tpe() -> None:
    """`python sweeps/round_a.py scheduler.name=pbt` was refused ("cannot be combined with searcher.name=optuna")
    although the user never chose Optuna: the round's default searcher gives way; a chosen one does not."""
    defaults = {"searcher": {"name": "optuna"}, "scheduler": {"name": "asha"}}  # as sweeps/round_a.py
    s = load_sweep_config("round_a", ["scheduler.name=pbt"], dict(defaults))
    assert (s.scheduler.name, s.searcher.name) == ("pbt", "random")
    with pytest.raises(ConfigError, match="pbt cannot be combined with searcher.name=optuna"):
        load_sweep_config("round_a", ["scheduler.name=pbt", "searcher.name=optuna"], dict(defaults))
    assert load_sweep_config("round_a", ["scheduler.name=asha"], dict(defaults)).searcher.name == "optuna"


@pytest.mark.parametrize("override", ["time_budget_s=-1", "compute_budget_s=-5", "checkpoint_keep=0",
                                      "cost_per_gpu_hour=-1", "fno_budget_s=0", "fno_steps=-1", "verbose=4", "scheduler.max_t=-1",
                                      "scheduler.perturbation_interval=0", "searcher.n_startup_trials=-1",
                                      "gates.divergence_factor=1", "gates.bc_multiple=0",
                                      "small_eval.ece_ratio=0", "small_eval.fallback=lin", "small_eval.nrmse_margin=-0.01",
                                      "gates.skip_stages=[autoenc]", "scheduler.rungs_from=middle", "name=../evil", "name=a/b", "name=..",
                                      "storage_path=", "leaderboard=", "champion=", "report_dir=",
                                      # Path("s3://b/x") is ./s3:/b/x: the sweep ran and wrote its leaderboard there
                                      "leaderboard=s3://b/lb.csv", "champion=s3://b/c.json", "report_dir=gs://b/r",
                                      "wandb.dir=s3://b/w", "space=s3://b/s.yaml",
                                      # inf crashed in int(resources.gpu) or the socket; nan passed every check
                                      "resources.gpu=inf", "resources.cpu=nan", "connect_timeout_s=inf",
                                      "time_budget_s=1e400"])
def test_nonsensical_settings_are_refused_with_the_key_and_a_fix(override: str) -> None:
    """Each of these ran before (a negative time budget ended the sweep at once, best val_nrmse nan;
    checkpoint_keep=0 was taken as 1): now refused by the sweep config, before Ray starts."""
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"sweep config: '{re.escape(key)}' .*\. Fix: "):
        load_sweep_config("round_a", [override])


def test_every_range_checked_setting_exists_and_its_fix_passes() -> None:
    """The table's keys are sweep keys, and each fix (where it is one key=value) is itself accepted."""
    from ups.tune.sweep_config import RANGES, flatten_sweep

    keys = flatten_sweep(load_sweep_config("round_a", []))
    for key, _, _, fix in RANGES:
        assert key in keys, key
        first = fix.split()[0].rstrip(",")
        if first.startswith(f"{key}="):
            load_sweep_config("round_a", [first])


def _run_script(args: list[str], env_extra: dict[str, str], timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env_extra}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - t0


@pytest.mark.parametrize("overrides, unread", [
    (["scheduler.name=pbt", "scheduler.rungs_from=operator"], ["scheduler.rungs_from=operator"]),
    (["scheduler.name=fifo", "scheduler.grace_period=4", "scheduler.max_t=50", "searcher.name=random",
      "searcher.multivariate=true"], ["scheduler.grace_period=4", "scheduler.max_t=50", "searcher.multivariate=true"]),
    (["scheduler.name=pbt", "searcher.n_startup_trials=5"], ["searcher.n_startup_trials=5"]),  # PBT runs random search
    (["scheduler.perturbation_interval=3", "searcher.name=grid"], ["scheduler.perturbation_interval=3"]),
    (["scheduler.name=fifo"], []),  # the profile's own ASHA settings were not given: nothing to say
    (["scheduler.rungs_from=operator", "scheduler.brackets=2", "searcher.sampler=gp"], []),  # all read
])
def test_settings_the_sweep_does_not_read_are_named(overrides: list[str], unread: list[str]) -> None:
    """An explicit override that this sweep's scheduler or searcher ignores is accepted (one command line may serve
    several searches) and named: ``run_round`` prints each note under its header line."""
    from ups.tune.sweep_config import unread_overrides

    notes = unread_overrides(load_sweep_config("round_a", overrides), overrides)
    assert [n.split(" has no effect")[0] for n in notes] == unread, notes
    for note in notes:
        assert "only scheduler.name=" in note or "only searcher.name=" in note, note


def test_bad_space_refused_before_ray_starts(tmp_path: Path) -> None:
    """run_round validates everything in prepare(), before connect_ray(), data and storage."""
    from tests.fixtures.modules import sweep_script

    mod = sweep_script("round_a")
    bad = write(tmp_path, "params:\n  stages.operator.optimizer.lr: {dist: loguniform, low: -1, high: 1.0e-3}\n")
    storage = tmp_path / "runs"
    with pytest.raises(SearchSpaceError) as e:
        mod.main([f"space={bad}", f"storage_path={storage}", f"leaderboard={tmp_path / 'lb.csv'}"])
    assert str(bad) in str(e.value) and "params.stages.operator.optimizer.lr" in str(e.value)
    assert not storage.exists() and not (tmp_path / "lb.csv").exists()  # nothing half-written


def test_unreachable_ray_address_fails_fast_with_fix(tmp_path: Path) -> None:
    proc, seconds = _run_script(["sweeps/round_a.py", f"storage_path={tmp_path / 'runs'}", "connect_timeout_s=2",
                                 f"leaderboard={tmp_path / 'lb.csv'}"], {"RAY_ADDRESS": "127.0.0.1:9"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "127.0.0.1:9" in proc.stderr and "unreachable" in proc.stderr and "unset RAY_ADDRESS" in proc.stderr
    assert seconds < 30
    assert not (tmp_path / "lb.csv").exists()


def test_ups_sweep_cli_lists_rounds_and_refuses_unknown(capsys) -> None:
    from ups.tune.cli import available_rounds, main

    assert {"round_a", "round_b", "round_c", "round_d", "aggressive", "dims"} <= set(available_rounds())
    assert main(["--help"]) == 0 and "round_a" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="unknown round 'round_z'.*Available: aggressive"):
        main(["round_z"])


def test_a_trial_larger_than_the_local_instance_fails_before_data(tmp_path) -> None:
    """resources.cpu above the local Ray instance's CPUs left every trial PENDING with no error (a 2-core
    machine with resources.cpu=3 waited until killed); refused before Ray and data, as a fresh driver."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    script = Path(__file__).resolve().parents[1] / "sweeps" / "round_a.py"
    cpus = os.cpu_count() or 1
    proc = subprocess.run(
        [sys.executable, str(script), f"resources.cpu={cpus + 1}", f"storage_path={tmp_path / 'runs'}",
         f"leaderboard={tmp_path / 'lb.csv'}", "data.cache_dir=/nonexistent/never"],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"resources.cpu={cpus + 1} per trial, but the local Ray instance has {cpus} CPUs" in proc.stderr
    assert f"Fix: resources.cpu={cpus} or less" in proc.stderr
    assert not (tmp_path / "lb.csv").exists() and not Path("/nonexistent/never").exists()
    proc = subprocess.run(  # ray_num_cpus caps the local instance
        [sys.executable, str(script), "resources.cpu=2", "ray_num_cpus=1", f"storage_path={tmp_path / 'runs'}",
         f"leaderboard={tmp_path / 'lb.csv'}", "data.cache_dir=/nonexistent/never"],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "has 1 CPUs (ray_num_cpus / this machine's)" in proc.stderr, proc.stderr[-2000:]


def test_a_trial_larger_than_the_running_instance_is_refused(ray_session, tmp_path) -> None:
    """With Ray already up (the session's 2 CPUs), the check reads the instance's own resources."""
    from tests.test_sweep_engine import common, make_trainable
    from ups.tune.launcher import run_round

    cpus = float(__import__("ray").cluster_resources().get("CPU", 1))
    with pytest.raises(ConfigError, match=rf"resources.cpu={cpus + 1:g} per trial, but the local Ray instance has "
                                          rf"{cpus:g} CPUs"):
        run_round("round_a", [*common(tmp_path), f"resources.cpu={cpus + 1:g}", "num_samples=1",
                              "time_budget_s=30"],  # without the check: 30 s of a PENDING trial, no error
                  trainable=make_trainable("training.lambda_spectral", {}))
    assert not (tmp_path / "lb.csv").exists()


@pytest.mark.parametrize("address", [[], ["ray_address=local"]], ids=["no-address", "ray_address=local"])
def test_full_profile_without_gpu_fails_before_data(tmp_path, address: list[str]) -> None:
    """Run as a fresh driver (a subprocess), so the check runs even when the test session's Ray is up.
    ray_address=local (a local instance too) skipped the check: the trials waited for a GPU until killed."""
    import os
    import subprocess
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    script = Path(__file__).resolve().parents[1] / "sweeps" / "round_a.py"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script), "profile=full", f"storage_path={tmp_path / 'runs'}",
         f"leaderboard={tmp_path / 'lb.csv'}", "data.cache_dir=/nonexistent/never", *address],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert re.search(r"no CUDA GPU.*profile=smoke", proc.stderr), proc.stderr[-2000:]
    assert time.monotonic() - t0 < 60  # refused before Ray or any data work starts
    assert not (tmp_path / "lb.csv").exists()
    assert not Path("/nonexistent/never").exists()


@pytest.mark.parametrize("searcher", ["optuna", "random"])
def test_start_at_reference_switch(searcher: str) -> None:
    """searcher.start_at_reference (default true) queues the space's reference point as the first trial;
    false leaves the searcher's first suggestion to the searcher itself."""
    from ups.tune.tuner_build import build_searcher

    point = {"stages.operator.optimizer.lr": 3.0e-4}
    for flag, expected in (("true", [point]), ("false", [])):
        s = load_sweep_config("round_a", [f"searcher.name={searcher}", f"searcher.start_at_reference={flag}"])
        alg, _ = build_searcher(s, point, max_conc=2)
        queued = getattr(getattr(alg, "searcher", alg), "_points_to_evaluate", None)
        assert list(queued or []) == expected, (searcher, flag, queued)


LHS_SPACE = """\
params:
  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-5, high: 1.0e-1}
  stages.operator.warmup_steps_ratio: {dist: uniform, low: 0.0, high: 0.3}
  stages.operator.batch_size: {dist: choice, values: [8, 16, 32, 64]}
  stages.operator.optimizer.betas: {dist: choice, values: [[0.9, 0.95], [0.9, 0.99]]}
  latent.tokens: {dist: int, low: 4, high: 11}
"""


def test_latin_hypercube_start_up_covers_every_range_and_choice(tmp_path: Path) -> None:
    """searcher.initial_design=lhs: one point in each of n equal strata of every knob (log strata for a
    loguniform), every choice value ⌊n/k⌋ or ⌈n/k⌉ times, seeded; random draws give no such cover."""
    import math
    from collections import Counter

    path = tmp_path / "lhs.yaml"
    path.write_text(LHS_SPACE)
    space = load_space(path)
    n = 8
    pts = space.latin_hypercube(n, seed=3)
    assert pts == space.latin_hypercube(n, seed=3) and pts != space.latin_hypercube(n, seed=4)
    strata = sorted(int(n * math.log(p["stages.operator.optimizer.lr"] / 1e-5) / math.log(1e-1 / 1e-5)) for p in pts)
    assert strata == list(range(n))
    assert sorted(int(n * p["stages.operator.warmup_steps_ratio"] / 0.3) for p in pts) == list(range(n))
    assert set(Counter(p["stages.operator.batch_size"] for p in pts).values()) == {2}
    betas = Counter(p["stages.operator.optimizer.betas"] for p in pts)
    assert betas == {"[0.9, 0.95]": 4, "[0.9, 0.99]": 4}  # list choices are encoded as the searcher sees them
    tokens = [p["latent.tokens"] for p in pts]
    assert all(isinstance(t, int) and 4 <= t <= 11 for t in tokens) and len(set(tokens)) == n
    assert space.latin_hypercube(0, seed=0) == []


def test_an_int_range_on_a_log_scale_reaches_optuna_as_a_log_int(tmp_path: Path) -> None:
    """``{dist: int, log: true}``: Ray's lograndint, which OptunaSearch hands to Optuna as
    IntDistribution(low, high, log=True) (both ends inclusive); the Latin-hypercube start-up cuts the log range
    into strata; the report's study uses the same distribution; ``log`` on a linear range stays refused."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from ups.reports.optuna_study import _distribution

    path = write(tmp_path, "params:\n  operator.hidden_dim: {dist: int, low: 16, high: 512, log: true}\n"
                           "  latent.tokens: {dist: int, low: 4, high: 64}\n")
    space = load_space(path)
    hidden, tokens = space.params["operator.hidden_dim"], space.params["latent.tokens"]
    assert (hidden.log, tokens.log) == (True, False)
    converted = OptunaSearch.convert_search_space(space.tune_space("optuna"))
    assert converted["operator.hidden_dim"] == optuna.distributions.IntDistribution(16, 512, log=True)
    assert converted["latent.tokens"] == optuna.distributions.IntDistribution(4, 64)
    assert _distribution(hidden) == converted["operator.hidden_dim"]
    n = 10  # one point per log stratum of [16, 513): a linear cut would put 7 of the 10 above 160
    widths = [p["operator.hidden_dim"] for p in space.latin_hypercube(n, seed=0)]
    assert sorted(int(n * math.log(w / 16) / math.log(513 / 16)) for w in widths) == list(range(n))
    assert all(isinstance(w, int) and 16 <= w <= 512 for w in widths)
    for text, needle in [("{dist: int, low: 0, high: 8, log: true}", "int with log: true needs low ≥ 1 (got 0)"),
                         ("{dist: int, low: 1, high: 8, log: 'yes'}", "'log' = 'yes' must be true or false"),
                         ("{dist: uniform, low: 0.1, high: 0.5, log: true}", "belong to dist: around / int")]:
        with pytest.raises(SearchSpaceError, match=re.escape(needle)):
            load_space(write(tmp_path, f"params:\n  ttc.threshold: {text}\n" if "uniform" in text else
                             f"params:\n  latent.tokens: {text}\n", name="bad.yaml"))


@pytest.mark.parametrize("design, reference", [("lhs", "true"), ("lhs", "false"), ("random", "true")])
def test_tpe_start_up_design_is_queued(tmp_path: Path, design: str, reference: str) -> None:
    """With lhs, TPE's n_startup_trials start-up trials are queued: the reference point (if on) and then
    Latin-hypercube points; with random only the reference is queued and Optuna draws the rest."""
    from ups.tune.tuner_build import build_searcher

    path = tmp_path / "lhs.yaml"
    path.write_text(LHS_SPACE)
    space = load_space(path)
    point = {"stages.operator.optimizer.lr": 3.0e-4}
    s = load_sweep_config("round_a", ["searcher.n_startup_trials=5", f"searcher.initial_design={design}",
                                      f"searcher.start_at_reference={reference}"])
    alg, _ = build_searcher(s, point, max_conc=2, space=space)
    queued = list(alg.searcher._points_to_evaluate or [])
    ref = [point] if reference == "true" else []
    expected = ref + (space.latin_hypercube(5 - len(ref), seed=s.searcher.seed) if design == "lhs" else [])
    assert queued == expected and len(queued) == (5 if design == "lhs" else len(ref))
    with pytest.raises(ConfigError, match=r"searcher.initial_design.*use lhs or random"):
        load_sweep_config("round_a", ["searcher.initial_design=sobol"])


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_optuna_sampler_is_tpe_or_a_gaussian_process(tmp_path: Path, sampler: str) -> None:
    """searcher.sampler=tpe|gp picks Optuna's model after the start-up; anything else is refused. On a
    smooth one-knob objective GP's suggestions after a 6-point Latin-hypercube start-up sit at the
    optimum (random draws: median ≈ 1 decade away); TPE keeps exploring (median 0.3–0.9 decades)."""
    import math

    import optuna

    from ups.tune.tuner_build import build_searcher

    path = tmp_path / "lr.yaml"
    path.write_text("params:\n  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-5, high: 1.0e-1}\n")
    space = load_space(path)
    s = load_sweep_config("round_a", ["searcher.n_startup_trials=6", f"searcher.sampler={sampler}",
                                      "searcher.start_at_reference=false"])
    alg, _ = build_searcher(s, {}, max_conc=1, space=space)
    kind = optuna.samplers.GPSampler if sampler == "gp" else optuna.samplers.TPESampler
    assert isinstance(alg.searcher._sampler, kind)
    alg.set_search_properties("val_nrmse", "min", space.tune_space("optuna"))
    dist = []  # decades between each suggested lr and the objective's optimum 3e-3
    for i in range(16):
        lr = alg.suggest(f"t{i}")["stages.operator.optimizer.lr"]
        dist.append(abs(math.log10(lr) - math.log10(3e-3)))
        alg.on_trial_complete(f"t{i}", {"val_nrmse": 0.07 + dist[-1] ** 2})
    model = sorted(dist[6:])
    assert model[len(model) // 2] < (0.05 if sampler == "gp" else 1.0), dist
    with pytest.raises(ConfigError, match=r"searcher.sampler.*use tpe or gp"):
        load_sweep_config("round_a", ["searcher.sampler=cmaes"])


def test_tpe_multivariate_and_constant_liar_reach_the_sampler() -> None:
    """searcher.multivariate / constant_liar are handed to Optuna's TPESampler (off by default); with the
    GP sampler, which has neither, they are refused before Ray starts."""
    from ups.tune.tuner_build import build_searcher

    space = load_space(REPO / "search_spaces" / "round_a.yaml")
    for flags in ([], ["searcher.multivariate=true", "searcher.constant_liar=true"]):
        s = load_sweep_config("round_a", flags)
        sampler = build_searcher(s, {}, max_conc=2, space=space)[0].searcher._sampler
        assert (sampler._multivariate, sampler._constant_liar) == ((True, True) if flags else (False, False))
    with pytest.raises(ConfigError, match=r"searcher.multivariate/constant_liar.*TPE options.*searcher.sampler=tpe"):
        load_sweep_config("round_a", ["searcher.sampler=gp", "searcher.multivariate=true"])


@pytest.mark.parametrize("stopped", ["complete", "pruned"])
def test_a_trial_stopped_before_its_final_report_is_told_to_optuna_as_searcher_stopped_says(stopped: str) -> None:
    """searcher.stopped: a trial whose last report is not its final one (ASHA, a gate) reaches Optuna's study as
    COMPLETE with its last figure (Ray's way, the default) or as PRUNED with every figure it reported per
    iteration; a finished trial is COMPLETE and an errored one FAIL either way.  A searcher pickled before the
    setting existed tells Ray's way."""
    import optuna

    from ups.tune.tuner_build import build_searcher

    space = load_space(REPO / "search_spaces" / "round_a.yaml")
    s = load_sweep_config("round_a", [f"searcher.stopped={stopped}", "searcher.start_at_reference=false"])
    limiter = build_searcher(s, {}, max_conc=4, space=space)[0]
    limiter.set_search_properties("val_nrmse", "min", space.tune_space("optuna"))
    for tid in ("finished", "stopped", "crashed"):
        assert limiter.suggest(tid) is not None
        for it, v in ((1, 0.5), (2, 0.3)):
            limiter.on_trial_result(tid, {"val_nrmse": v, "training_iteration": it})
    limiter.on_trial_complete("finished", {"val_nrmse": 0.2, "training_iteration": 3, "final": True})
    limiter.on_trial_complete("stopped", {"val_nrmse": 0.3, "training_iteration": 2})
    limiter.on_trial_complete("crashed", error=True)  # as Tune tells a trial that raised
    finished, cut, crashed = limiter.searcher._ot_study.get_trials(deepcopy=False)
    assert (finished.state, finished.value) == (optuna.trial.TrialState.COMPLETE, 0.2)
    assert crashed.state == optuna.trial.TrialState.FAIL
    assert cut.intermediate_values == {1: 0.5, 2: 0.3}
    want = optuna.trial.TrialState.PRUNED if stopped == "pruned" else optuna.trial.TrialState.COMPLETE
    assert (cut.state, cut.value) == (want, 0.3)

    old = build_searcher(s, {}, max_conc=4, space=space)[0]
    del old.searcher._stopped  # as unpickled from a sweep started before searcher.stopped
    old.set_search_properties("val_nrmse", "min", space.tune_space("optuna"))
    old.suggest("t")
    old.on_trial_complete("t", {"val_nrmse": 0.4, "training_iteration": 1})
    assert old.searcher._ot_study.get_trials(deepcopy=False)[0].state == optuna.trial.TrialState.COMPLETE
    with pytest.raises(ConfigError, match=r"searcher.stopped.*use complete or pruned"):
        load_sweep_config("round_a", ["searcher.stopped=early"])


def test_promotion_seeds_refuses_a_searched_seed(tmp_path: Path) -> None:
    from ups.tune.prepare import prepare

    space = tmp_path / "seeded.yaml"
    space.write_text("params:\n  training.seed: {dist: choice, values: [0, 1]}\n")
    base = [f"space={space}", f"storage_path={tmp_path / 'runs'}"]
    prepare("round_a", base)  # searching the seed is allowed on its own
    with pytest.raises(ConfigError, match=r"seeded.yaml: params.training.seed is searched.*promotion.seeds=0"):
        prepare("round_a", [*base, "promotion.seeds=2"])
    with pytest.raises(ConfigError, match=r"promotion.seeds=-1: must be ≥ 0"):
        prepare("round_a", [f"storage_path={tmp_path / 'runs'}", "promotion.seeds=-1"])
    # a PBT trial is a schedule and inherited weights: its last values retrained with other seeds are another model
    prepare("round_a", [f"storage_path={tmp_path / 'runs'}", "scheduler.name=pbt"])
    with pytest.raises(ConfigError, match=r"promotion.seeds=2 with scheduler.name=pbt: .*pbt_schedule.*Fix: "
                                          r"promotion.seeds=0 under PBT, or scheduler.name=asha"):
        prepare("round_a", [f"storage_path={tmp_path / 'runs'}", "scheduler.name=pbt", "promotion.seeds=2"])


def test_asha_rungs_are_automatic_and_never_inside_the_autoencoder_stage() -> None:
    from ups.tune.tuner_build import asha_rungs
    from ups.tune.prepare import prepare

    p = prepare("round_a", [])  # smoke profile: 10 autoencoder + 30 operator + 1 + 1 epochs
    assert p.scfg.scheduler.grace_period == 0
    assert asha_rungs(p.scfg, p.base, p.space) == (44, 20, [20])  # one rung, at operator epoch 10
    full = prepare("round_a", ["profile=full"])  # 40 + 15 + 5 + 6 epochs, reduction factor 2: one rung (90 > 68)
    assert asha_rungs(full.scfg, full.base, full.space) == (68, 45, [45])
    short = prepare("round_a", ["stages.operator.epochs=4"])
    assert asha_rungs(short.scfg, short.base, short.space)[1] == 12
    with pytest.raises(ConfigError, match=r"grace_period=4 .*autoencoder stage \(iterations 1-10\).*"
                                          r"grace_period=0 \(automatic, here 20\) or a value above 10"):
        prepare("round_a", ["scheduler.grace_period=4"])
    assert asha_rungs(prepare("round_a", ["scheduler.grace_period=11"]).scfg, p.base, p.space)[2] == [11, 33]
    prepare("round_a", ["scheduler.grace_period=4", "scheduler.name=fifo"])  # no rungs, nothing to refuse
    prepare("round_a", ["scheduler.grace_period=1", "stages.autoencoder.epochs=0"])
    with pytest.raises(ConfigError, match=r"grace_period=0 \(automatic\) counts epochs, but scheduler.time_attr="
                                          r"time_total_s"):
        prepare("round_a", ["scheduler.time_attr=time_total_s"])
    prepare("round_a", ["scheduler.time_attr=time_total_s", "scheduler.grace_period=60", "scheduler.max_t=600"])


def test_asha_rungs_from_the_operator_stage_form_a_ladder_after_the_autoencoder() -> None:
    """scheduler.rungs_from=operator: the autoencoder epochs (cached across trials, and unrankable by val_nrmse)
    do not count, so the ladder is geometric in operator epochs: 1, 3, 9, 27 at reduction factor 3, i.e.
    iterations 11, 13, 19, 37 of the smoke profile, and Ray's brackets hold exactly those milestones."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from ups.tune.tuner_build import asha_rungs, build_scheduler
    from ups.tune.prepare import prepare

    p = prepare("round_a", ["scheduler.rungs_from=operator"])  # smoke: 10 autoencoder + 30 operator + 1 + 1
    assert asha_rungs(p.scfg, p.base, p.space) == (44, 1, [11, 13, 19, 37])
    sched = build_scheduler(p.scfg, p.base, p.space)
    assert [[m for m, _ in b._rungs] for b in sched._brackets] == [[37, 19, 13, 11]]
    two = prepare("round_a", ["scheduler.rungs_from=operator", "scheduler.brackets=2", "scheduler.grace_period=2"])
    assert asha_rungs(two.scfg, two.base, two.space)[2] == [12, 16, 28]
    assert [[m for m, _ in b._rungs] for b in build_scheduler(two.scfg, two.base, two.space)._brackets] == \
        [[28, 16, 12], [28, 16]]  # bracket 1 starts one rung later, as Ray's do
    start = prepare("round_a", ["scheduler.grace_period=11"])  # Ray's own rule is unchanged
    assert [[m for m, _ in b._rungs] for b in build_scheduler(start.scfg, start.base, start.space)._brackets] == \
        [[33, 11]]
    # the milestones are live: at iteration 10 nothing is recorded, at 11 a trial worse than the best third stops
    bracket, sign = sched._brackets[0], -1.0  # mode=min: ASHA keeps −val_nrmse
    for i, v in enumerate([0.10, 0.20, 0.30]):
        assert bracket.on_result(SimpleNamespace(trial_id=f"t{i}"), 10, sign * v) == TrialScheduler.CONTINUE
    assert not any(rec for _, rec in bracket._rungs)
    assert bracket.on_result(SimpleNamespace(trial_id="t0"), 11, sign * 0.10) == TrialScheduler.CONTINUE
    assert bracket.on_result(SimpleNamespace(trial_id="t1"), 11, sign * 0.20) == TrialScheduler.STOP
    assert dict(bracket._rungs)[11] == {"t0": -0.10, "t1": -0.20}

    with pytest.raises(ConfigError, match=r"rungs_from=operator counts ASHA's rungs in epochs .*time_attr=time_total_s"):
        prepare("round_a", ["scheduler.rungs_from=operator", "scheduler.time_attr=time_total_s",
                            "scheduler.grace_period=60", "scheduler.max_t=600"])
    with pytest.raises(ConfigError, match=r"grace_period=33 \(counted after the autoencoder's 10 epochs\) .*"
                                          r"grace_period=0 \(automatic, here 1\) or a value up to 32"):
        prepare("round_a", ["scheduler.rungs_from=operator", "scheduler.grace_period=33"])
    prepare("round_a", ["scheduler.rungs_from=operator", "scheduler.grace_period=4"])  # iteration 14: accepted


def test_asha_max_t_covers_the_longest_trial_the_space_samples(tmp_path: Path) -> None:
    """Ray's ASHA stops every trial at max_t: the automatic max_t is the longest trial the space can sample
    (it was the base config's length, so trials drawn with 60 operator epochs were cut at iteration 44,
    before their final evaluation), and an explicit max_t that cuts any trial is refused before Ray."""
    from ups.tune.tuner_build import asha_rungs, build_scheduler
    from ups.tune.prepare import prepare

    lr = "  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-4, high: 3.0e-3}\n"
    longer = write(tmp_path, f"params:\n{lr}  stages.operator.epochs: {{dist: choice, values: [30, 60]}}\n")
    p = prepare("round_a", [f"space={longer}"])  # smoke: 10 autoencoder + 30 operator + 1 + 1 epochs
    assert asha_rungs(p.scfg, p.base, p.space)[0] == 10 + 60 + 1 + 1 + 2
    assert build_scheduler(p.scfg, p.base, p.space)._max_t == 74
    copied = write(tmp_path, f"params:\n{lr}  stages.operator.epochs: {{dist: int, low: 20, high: 45}}\n"
                             "derived:\n  stages.diff_residual.epochs: {rule: scale, of: stages.operator.epochs, "
                             "factor: 0.1}\n", "copied.yaml")
    q = prepare("round_a", [f"space={copied}"])
    assert asha_rungs(q.scfg, q.base, q.space)[0] == 10 + 45 + 5 + 1 + 2  # derived: 0.1 × the largest 45
    assert asha_rungs(prepare("round_a", []).scfg, q.base, prepare("round_a", []).space)[0] == 44  # unchanged
    with pytest.raises(ConfigError, match=r"max_t=60: Ray's ASHA stops a trial when its training_iteration reaches "
                                          r"max_t, and the longest trial this space can sample here trains 72 epochs "
                                          r"\(autoencoder 10, operator 60, diff_residual 1, consistency_distill 1\) "
                                          r"before its final evaluation.*max_t=0 \(automatic, here 74\)"):
        prepare("round_a", [f"space={longer}", "scheduler.max_t=60"])
    with pytest.raises(ConfigError, match=r"max_t=3: .*a trial here trains 42 epochs"):
        prepare("round_a", ["scheduler.max_t=3"])
    prepare("round_a", ["scheduler.max_t=43"])  # the final report at iteration 43 is the trial's last anyway
    with pytest.raises(ConfigError, match=r"max_t=42: .*global_epoch reaches"):  # the last epoch and the final
        prepare("round_a", ["scheduler.time_attr=global_epoch", "scheduler.grace_period=20", "scheduler.max_t=42"])
    prepare("round_a", ["scheduler.time_attr=global_epoch", "scheduler.grace_period=20", "scheduler.max_t=43"])
    with pytest.raises(ConfigError, match=r"max_t=0 \(automatic\) counts epochs \(44 here\), but scheduler.time_attr="
                                          r"time_total_s counts seconds: Ray's ASHA would stop every trial at 44 s"):
        prepare("round_a", ["scheduler.time_attr=time_total_s", "scheduler.grace_period=60"])
    prepare("round_a", ["scheduler.max_t=3", "scheduler.name=fifo"])  # no ASHA, no max_t
    with pytest.raises(ConfigError, match=r"grace_period=100 puts ASHA's first rung after the last epoch of the "
                                          r"longest trial here \(training_iteration 42\): .* value up to 42"):
        prepare("round_a", ["scheduler.grace_period=100"])  # it was clamped to max_t 44: a rung no report reaches
    prepare("round_a", [f"space={longer}", "scheduler.grace_period=70"])  # the 60-epoch trials reach it


# ----------------------------------------------------------------------------- input validation (audit)
LR = "stages.operator.optimizer.lr"
OK = f"  {LR}: {{dist: loguniform, low: 1.0e-4, high: 3.0e-3}}\n"
HD = "params:\n  operator.hidden_dim: {dist: choice, values: [64, 96]}\n"


@pytest.mark.parametrize("text, where, needles", [
    # A: raw tracebacks before (ZeroDivisionError, ValueError, TypeError, AttributeError)
    ("params:\n  operator.heads: {dist: choice, values: [0, 4]}\n", "params.operator.heads", ["must be ≥ 1", "Fix:"]),
    ("params:\n  operator.group_size: {dist: int, low: 0, high: 8}\n", "params.operator.group_size", ["Fix:"]),
    (f"params:\n{OK}derived:\n  stages.diff_residual.optimizer.lr: {{rule: scale, of: {LR}, factor: abc}}\n",
     "derived.stages.diff_residual.optimizer.lr", ["'factor' = 'abc' is not a number", "Fix:"]),
    (f"params:\n{OK}derived:\n  stages.diff_residual.optimizer.lr: {{rule: scale, of: {LR}, factor: [2]}}\n",
     "derived.stages.diff_residual.optimizer.lr", ["'factor' = [2] is not a number"]),
    (f"params:\n{OK}derived:\n  stages.diff_residual.optimizer.lr: {{rule: scale, of: {LR}, facter: 2}}\n",
     "derived.stages.diff_residual.optimizer.lr", ["['facter']", "Did you mean 'factor'?", "Fix:"]),
    ("params:\n  operator.depths: {dist: choice, values: [[1,1,1],[2,2,2]]}\n"
     "derived:\n  decoder.frequencies: {rule: scale, of: operator.depths, factor: 2}\n",
     "derived.decoder.frequencies", ["'operator.depths' holds a list", "Fix: use rule: copy"]),
    ("params:\n  operator.depths: {dist: choice, values: [[1,1,1],[2,2,2]]}\n"
     "derived:\n  operator.heads: {rule: divisor, of: operator.depths, near: 4}\n",
     "derived.operator.heads", ["needs integer keys", "Fix:"]),
    (HD + "derived:\n  operator.heads: {rule: divisor, of: operator.hidden_dim, near: [4]}\n",
     "derived.operator.heads", ["'near' = [4] must be a positive integer", "Fix:"]),
    (HD + "derived:\n  operator.heads: {rule: divisor, of: operator.hidden_dim, near: \"8\"}\n",
     "derived.operator.heads", ["quoted number", "Fix: write near: 8"]),
    (f"params:\n{OK}derived:\n  latent.tokens: {{rule: preset, of: stages.operator.scheduler}}\n",
     "derived.latent.tokens", ["'of' must be latent.dim", "Fix: of: latent.dim"]),
    ("params:\n  latent.dim: {dist: grid, values: [8, 16]}\nderived:\n  ttc.threshold: {rule: preset, of: latent.dim}\n",
     "derived.ttc.threshold", ["rule 'preset' sets only", "Fix:"]),
    (f"params:\n  {LR}: {{dist: loguniform, low: 1.0e-4, high: 3.0e-3, values: [1]}}\n", f"params.{LR}",
     ["['values'] are not fields of dist 'loguniform'", "Fix: remove them"]),
    (f"reference: [a]\nparams:\n{OK}", "reference", ["expected a mapping", "Fix:"]),
    (f"params:\n{OK}derived: abc\n", "derived", ["expected a mapping", "Fix:"]),
    ("params:\n  training.lambda_spectral: {dist: around, rel: 0.2, zero_width: abc}\n",
     "params.training.lambda_spectral", ["'zero_width' = 'abc' is not a number", "Fix:"]),
    ("params:\n  ttc.threshold: {dist: around, zero_width: -1}\n", "params.ttc.threshold", ["must be ≥ 0", "Fix:"]),
    # B: accepted, then every trial failed
    ("params:\n  stages.operator.epochs: {dist: uniform, low: 2, high: 16}\n", "params.stages.operator.epochs",
     ["is an integer", "Fix: use dist: int"]),
    ("params:\n  operator.depths: {dist: uniform, low: 1, high: 2}\n", "params.operator.depths",
     ["holds a list", "Fix: use dist: choice"]),
    # C: silently wrong
    ("params:\n  latent.dim: {dist: grid, values: [32, 32, 16]}\n", "params.latent.dim",
     ["listed twice", "Fix: remove the repeat"]),
    ("params:\n  stages.operator.ema_decay: {dist: choice, values: [0.999, \"0.9995\"]}\n",
     "params.stages.operator.ema_decay", ["mixes number and string", "Fix: write every value as a number"]),
    ("params:\n  ttc.enabled: {dist: choice, values: [true, 1]}\n", "params.ttc.enabled",
     ["mixes", "Fix: write every value as true or false"]),
    (f"params:\n{OK}  ttc.threshold: {{dist: uniform, low: 0.2, high: 0.4}}\n"
     f"derived:\n  ttc.threshold: {{rule: scale, of: {LR}, factor: 100}}\n",
     "derived.ttc.threshold", ["also in params", "replace the sampled value", "Fix:"]),
    (f"params:\n{OK}derived:\n  stages.diff_residual.optimizer.lr: {{rule: copy, of: stages.consistency_distill.optimizer.lr}}\n"
     f"  stages.consistency_distill.optimizer.lr: {{rule: copy, of: stages.diff_residual.optimizer.lr}}\n",
     "derived.stages.diff_residual.optimizer.lr", ["cycle", "Fix:"]),
    (f"params:\n{OK}derived:\n  stages.diff_residual.optimizer.lr: {{rule: copy, of: stages.consistency_distill.optimizer.lr}}\n"
     f"  stages.consistency_distill.optimizer.lr: {{rule: copy, of: {LR}}}\n",
     "derived.stages.diff_residual.optimizer.lr", ["sets only later", "Fix: move derived.stages.consistency_distill"]),
    (f"params:\n{OK}derived:\n  stages.diff_residual.optimizer.lr: {{rule: copy, of: stages.diff_residual.optimizer.lr}}\n",
     "derived.stages.diff_residual.optimizer.lr", ["reads its own key", "Fix:"]),
    (f"params:\n  {LR}: {{dist: around, rel: 0.2, log: \"false\"}}\n", f"params.{LR}",
     ["'log' = 'false' must be true or false", "Fix: write log: true or log: false"]),
    (f"reference:\n  ttc.threshold: 0.3\nparams:\n{OK}", "reference.ttc.threshold",
     ["not in params", "in every trial", "Fix: add it to params", "ttc.threshold=0.3"]),
    (f"params:\n{OK}  {LR}: {{dist: uniform, low: 1.0e-3, high: 3.0e-3}}\n", "lines 2 and 3",
     [f"key '{LR}' appears twice in 'params' (lines 2 and 3)", "Fix: remove one"]),
    (f"params:\n{OK}params:\n  ttc.threshold: {{dist: uniform, low: 0.2, high: 0.4}}\n", "params",
     ["key 'params' appears twice at the top level (lines 1 and 3)"]),
    # B: an integer draw on a float key (lr 1, 2, 3) was accepted; every value passes the config on its own
    (f"params:\n  {LR}: {{dist: int, low: 1, high: 3}}\n", f"params.{LR}",
     ["dist 'int' draws whole numbers", f"'{LR}' is a float in the config schema", "Fix: use dist: uniform or dist: "
      "loguniform"]),
    ("params:\n  ttc.threshold: {dist: int, low: 0, high: 1}\n", "params.ttc.threshold", ["is a float", "Fix:"]),
    # D: messages
    ("params: {a: [\n", "not valid YAML at line 2, column 1", ["expected the node content"]),
    (f"params:\n  stages:\n    operator:\n      optimizer:\n        lr: {{dist: uniform, low: 1.0e-3, high: 3.0e-3}}\n",
     "params.stages", ["use dotted keys", f"'{LR}: {{dist: …}}'"]),
])
def test_invalid_spaces_are_refused_at_load_naming_file_key_and_fix(tmp_path: Path, base, text: str, where: str,
                                                                    needles: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SearchSpaceError) as e:
        load_space(path, base)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and msg.count(str(path)) == 1, msg
    assert where in msg, msg
    for n in needles:
        assert n in msg, msg
    assert "\n" not in msg, msg


def test_derived_rule_failure_is_labelled_with_its_key(tmp_path: Path, base) -> None:
    """A rule whose result the config refuses names derived.<key> (not 'reference'), and the path once."""
    path = write(tmp_path, HD + "derived:\n  decoder.num_layers: {rule: scale, of: operator.hidden_dim, factor: 0.001}\n")
    with pytest.raises(SearchSpaceError) as e:
        load_space(path, base)
    msg = str(e.value)
    assert msg.startswith(f"{path}: derived.decoder.num_layers: ") and msg.count(str(path)) == 1, msg
    assert "'decoder.num_layers' must be ≥ 1" in msg and "Fix:" in msg


def test_unreadable_space_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match=rf"{re.escape(str(tmp_path))}: is a folder.*Fix: give the path of a"):
        load_space(tmp_path)
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("description: caf\xe9\nparams:\n  ttc.threshold: {dist: uniform, low: 0.1, high: 0.2}\n"
                      .encode("latin-1"))
    with pytest.raises(SearchSpaceError, match=rf"{re.escape(str(latin))}: not UTF-8 .*line 1.*Fix: save the file as UTF-8"):
        load_space(latin)


def test_duplicate_yaml_keys_loader_is_reusable(tmp_path: Path) -> None:
    from ups.yamlio import loads_yaml, read_yaml

    assert loads_yaml("a: 1\nb: {c: 2}\n", "x") == {"a": 1, "b": {"c": 2}}
    with pytest.raises(ConfigError, match=r"^x: key 'c' appears twice at the top level \(lines 2 and 3\)"):
        loads_yaml("a: 1\nc: 2\nc: 3\n", "x", ConfigError)
    p = write(tmp_path, "a: 1\na: 2\n", "dup.yaml")
    with pytest.raises(ValueError, match=rf"{re.escape(str(p))}: key 'a' appears twice at the top level \(lines 1 and 2\)"):
        read_yaml(p)


@pytest.mark.parametrize("text, needle", [
    ("params:\n  training.lr: 1\n  training.lr: 2\n", "key 'training.lr' appears twice in 'params' (lines 2 and 3)"),
    ("a:\n  b:\n    c: 1\n    c: 2\n", "key 'c' appears twice in 'a.b' (lines 3 and 4)"),
    ("trial:\n  - {k: 1, k: 2}\n", "key 'k' appears twice in 'trial[0]' (lines 2 and 2)"),
    ("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n  y: 3\n", "key 'y' appears twice in 'other' (lines 4 and 5)"),
])
def test_duplicate_key_message_names_the_enclosing_mapping(text: str, needle: str) -> None:
    """The repeat's line alone left the reader to find which section it is in (``params`` or ``reference``)."""
    from ups.yamlio import DuplicateKeyError, UniqueKeyLoader, loads_yaml

    with pytest.raises(ConfigError) as e:
        loads_yaml(text, "x", ConfigError)
    assert str(e.value) == f"x: {needle}; YAML would keep only the last one. Fix: remove one of them, or merge " \
                           f"them into one entry", str(e.value)
    import yaml

    with pytest.raises(DuplicateKeyError) as d:  # cluster_check reads key/first/again off the exception
        yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506
    assert d.value.key == needle.split("'")[1] and d.value.path == needle.split("'")[3]


@pytest.mark.parametrize("overrides, needles", [
    # B: an `around` space outside round C failed only after data, baselines and ray.init
    ([f"space={REPO / 'search_spaces' / 'round_c.yaml'}"],
     ["round_c.yaml: params.", "dist 'around'", "Fix: run sweeps/round_c.py"]),
    # C: an override of a swept or derived key was silently discarded
    (["stages.operator.optimizer.lr=1e-3"],
     ["stages.operator.optimizer.lr=… (the command line) would be replaced in every trial", "round_a.yaml sweeps it",
      "Fix: remove stages.operator.optimizer.lr=… from the command line"]),
    (["trial.stages.diff_residual.optimizer.lr=1e-3"], ["round_a.yaml derives it", "Fix: remove"]),
    # B: model/trainer values the types allow but nothing can use
    (["operator.heads=0"], ["'operator.heads' = 0 must be ≥ 1", "Fix:"]),
    (["training.device=gpu"], ["'training.device' = 'gpu'", "Fix: use training.device=auto"]),
    (["stages.operator.optimizer.name=sgdd"], ["adamw", "Fix:"]),
    (["searcher.seed=-1"], ["'searcher.seed' = -1", "Fix: searcher.seed=0"]),
    (["scheduler.time_attr=trainig_iteration", "scheduler.grace_period=3"],
     ["'scheduler.time_attr' = 'trainig_iteration'", "Fix: scheduler.time_attr=training_iteration"]),
])
def test_prepare_refuses_before_any_compute(tmp_path: Path, overrides: list[str], needles: list[str]) -> None:
    from ups.tune.prepare import prepare

    runs = tmp_path / "runs"
    with pytest.raises(ConfigError) as e:
        prepare("round_a", [f"storage_path={runs}", *overrides])
    for n in needles:
        assert n in str(e.value), str(e.value)
    assert not runs.exists()  # refused before storage (and so before data, baselines and Ray)


def test_profile_values_of_swept_keys_stay_allowed(tmp_path: Path) -> None:
    """The smoke profile sets ttc.candidates/beam_width for every round; aggressive sweeps them: allowed (the
    profile is a shared base), while the same keys from the round's DEFAULTS are refused."""
    from ups.tune.prepare import prepare

    prepare("aggressive", [f"storage_path={tmp_path}"])
    with pytest.raises(ConfigError, match=r"ttc.candidates=… \(sweeps/aggressive.py DEFAULTS\)"):
        prepare("aggressive", [f"storage_path={tmp_path}"], {"smoke": {"trial": ["ttc.candidates=2"]}})


def test_run_script_prints_bad_space_as_one_line_exit_2(tmp_path: Path, capsys) -> None:
    from ups.tune.cli import run_script

    path = write(tmp_path, "params:\n  operator.heads: {dist: choice, values: [0, 4]}\n"
                           "derived:\n  operator.heads: {rule: divisor, of: operator.hidden_dim, near: [4]}\n")
    assert run_script(lambda argv: load_space(path) and 0, []) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: derived.operator.heads: ") and "\n" not in err and "Traceback" not in err


def test_a_trial_label_shows_the_values_it_trained_with(base) -> None:
    """Round B snaps heads to a divisor of hidden_dim: the leaderboard label says what was trained."""
    from ups.config import to_dict
    from ups.tune.results import RowContext, trial_row

    space = load_space(REPO / "search_spaces" / "round_b.yaml", base)
    ctx = RowContext(round="round_b", experiment="round_b-x", space=space, base=to_dict(base),
                     reference_point=space.reference_point(base), data_hash="feedbeef1234")
    sample = {"latent.tokens": 24, "operator.hidden_dim": 64, "operator.depths": "[1, 1, 1]", "operator.heads": 6}
    row = trial_row(ctx, "t1", sample, {"val_nrmse": 0.1, "training_iteration": 3}, gate_reason=None)
    assert "heads=4" in row["label"] and "heads=6" not in row["label"], row["label"]
    assert json.loads(row["sampled_json"])["operator.heads"] == 4
    assert row["data_hash"] == "feedbeef1234"  # the report pairs the row with the baselines of its data
    assert row["epochs"] == 3 and "ttc:off" not in row["tags"]  # a trial stopped after 3 epoch reports


def test_a_finished_trials_epochs_leave_out_its_final_report_and_ttc_off_is_tagged(base) -> None:
    """``training_iteration`` counts the final evaluation's report too: 43 for 10+30+1+1 epochs (the trainer's
    ``global_epoch`` is the count).  With
    ``ttc.enabled=false`` the eval's ``nrmse_ttc`` is the plain figure, and the row's tags say ``ttc:off``."""
    from ups.config import to_dict
    from ups.tune.results import RowContext, trial_row

    space = load_space(REPO / "search_spaces" / "round_a.yaml", base)
    final = {"val_nrmse": 0.1, "training_iteration": 43, "global_epoch": 42, "final": 1, "nrmse": 0.2, "nrmse_ttc": 0.2}
    for enabled, tag in ((True, False), (False, True)):
        b = to_dict(base)
        b["ttc"]["enabled"] = enabled
        ctx = RowContext(round="round_a", experiment="round_a-x", space=space, base=b,
                         reference_point=space.reference_point(base), data_hash="feedbeef1234")
        row = trial_row(ctx, "t1", space.reference_point(base), final, gate_reason=None)
        assert row["epochs"] == 42 and ("ttc:off" in row["tags"].split(";")) is tag, row["tags"]


# ----------------------------------------------------------------------- combinations of swept params (audit)
BEAM = "ttc.beam_width: {dist: int, low: 1, high: 6}\n"
CANDS = "ttc.candidates: {dist: choice, values: [4, 8]}\n"


def test_a_combination_breaking_a_cross_field_rule_is_refused_at_load(tmp_path: Path, base) -> None:
    """beam_width 5 or 6 and candidates 4 each pass alone (with the other at its reference value), but together
    break `beam_width ≤ candidates`: before, accepted at load and failed inside every such trial.  The int
    range 1…6 is tried value by value, so the first that breaks the rule, 5, is named."""
    path = write(tmp_path, f"reference:\n  ttc.beam_width: 3\n  ttc.candidates: 8\nparams:\n  {BEAM}  {CANDS}")
    with pytest.raises(SearchSpaceError) as e:
        load_space(path, base)
    msg = str(e.value)
    assert msg.startswith(f"{path}: params.ttc.beam_width + params.ttc.candidates: ") and "\n" not in msg, msg
    for needle in ("ttc.beam_width = 5", "ttc.candidates = 4", "'ttc.beam_width' = 5 exceeds ttc.candidates = 4",
                   "keep beam_width ≤ candidates", "Fix: narrow params.ttc.beam_width or params.ttc.candidates",
                   "add a derived rule"):
        assert needle in msg, msg
    narrowed = write(tmp_path, f"params:\n  ttc.beam_width: {{dist: int, low: 1, high: 4}}\n  {CANDS}", "ok.yaml")
    load_space(narrowed, base)  # the fix the message gives is accepted


@pytest.mark.parametrize("high", [64, 1024])
def test_a_wide_int_range_is_checked_inside_not_only_at_its_ends(tmp_path: Path, base, high: int) -> None:
    """operator.hidden_dim int 8…64 passed (8 and 64 divide by the group size and heads) although every odd
    hidden size breaks `group_size | hidden_dim`: the trials that drew one failed.  A short range is tried
    whole; a wider one at each end and its neighbour."""
    path = write(tmp_path, f"params:\n  operator.hidden_dim: {{dist: int, low: 8, high: {high}}}\n")
    with pytest.raises(SearchSpaceError) as e:
        load_space(path, base)
    msg = str(e.value)
    assert msg.startswith(f"{path}: params.operator.hidden_dim: value {{'operator.hidden_dim': 9}}"), msg
    assert "does not divide operator.hidden_dim = 9" in msg and "Fix:" in msg, msg
    fixed = write(tmp_path, "params:\n  operator.hidden_dim: {dist: choice, values: [8, 16, 32, 64]}\n", "ok.yaml")
    load_space(fixed, base)


def test_choices_in_scientific_notation_are_numbers(tmp_path: Path, base) -> None:
    """YAML 1.1 reads 1e-4 (no dot) as the string '1e-4': a choice of learning rates written so was refused with
    "reference value 0.0001 is not one of the choices ['1e-4', '3e-4']", and mixed with 1.0e-3 it was blamed on
    quotes nobody wrote.  For a float key they are numbers, as low/high already were; a real quote mixed with
    numbers is still refused."""
    lr = "stages.operator.optimizer.lr"
    path = write(tmp_path, f"reference:\n  {lr}: 1e-4\nparams:\n  {lr}: {{dist: choice, values: [1e-4, 3e-4, 1.0e-3]}}\n")
    space = load_space(path, base)
    assert space.params[lr].values == [1e-4, 3e-4, 1e-3] and space.reference[lr] == 1e-4
    cfg, _ = space.materialize(base, {lr: 3e-4})
    assert cfg.stages.operator.optimizer.lr == 3e-4
    quoted = write(tmp_path, f"params:\n  {lr}: {{dist: choice, values: [1.0e-4, \"0.0003\"]}}\n", "quoted.yaml")
    with pytest.raises(SearchSpaceError, match="mixes number and string"):
        load_space(quoted, base)


def test_a_combination_is_refused_by_prepare_before_any_compute(tmp_path: Path) -> None:
    from ups.tune.prepare import prepare

    space = write(tmp_path, f"reference:\n  ttc.candidates: 8\nparams:\n  {BEAM}  {CANDS}")  # smoke base: 4 / 2
    runs = tmp_path / "runs"
    with pytest.raises(SearchSpaceError, match=r"params.ttc.beam_width \+ params.ttc.candidates: .*ttc.beam_width = 5"):
        prepare("round_a", [f"space={space}", f"storage_path={runs}"])
    assert not runs.exists()


def test_combinations_apply_derived_rules_as_a_trial_does(tmp_path: Path, base) -> None:
    """heads 32 fits hidden 64 and heads 4 fits hidden 80, but 32 does not divide 80: refused, unless a
    derived rule snaps heads to a divisor of hidden (round B), which the check applies as a trial does."""
    text = ("reference:\n  operator.hidden_dim: 64\n  operator.heads: 4\nparams:\n"
            "  operator.hidden_dim: {dist: choice, values: [64, 80]}\n  operator.heads: {dist: choice, values: [4, 32]}\n")
    with pytest.raises(SearchSpaceError) as e:
        load_space(write(tmp_path, text), base)
    msg = str(e.value)
    assert "params.operator.hidden_dim + params.operator.heads: " in msg, msg
    assert "operator.hidden_dim = 80" in msg and "operator.heads = 32" in msg and "does not divide" in msg, msg
    snap = text + "derived:\n  operator.heads: {rule: divisor, of: operator.hidden_dim, near: operator.heads}\n"
    space = load_space(write(tmp_path, snap, "snap.yaml"), base)
    cfg, _ = space.materialize(base, {"operator.hidden_dim": 80, "operator.heads": 32})
    assert cfg.operator.heads == 20


def test_an_int_range_is_tried_whole_where_a_rule_breaks_inside_it(tmp_path: Path, base) -> None:
    """heads 2 and 8 both divide hidden 64, heads 3 does not: an int range of a few values is tried value by
    value, not only at its ends."""
    text = ("reference:\n  operator.hidden_dim: 64\n  operator.heads: 2\nparams:\n"
            "  operator.hidden_dim: {dist: choice, values: [64]}\n"
            "  operator.heads: {dist: int, low: 2, high: 8}\n")
    with pytest.raises(SearchSpaceError, match=r"operator.heads'? = 3.*does not divide"):  # on its own, at load
        load_space(write(tmp_path, text), base)


def test_a_large_space_is_checked_on_a_sample_covering_every_pair(tmp_path: Path, base) -> None:
    """Over the product cap, every pair of extremes is still tried together (the rest drawn at random)."""
    from ups.tune import space as space_mod

    others = "".join(f"  {k}: {{dist: uniform, low: {lo}, high: {hi}}}\n" for k, lo, hi in (
        ("ttc.threshold", 0.0, 0.5), ("ttc.noise_scale", 0.5, 1.5), ("ttc.weights.mass", 0.5, 1.5),
        ("training.lambda_spectral", 0.0, 0.5), ("training.lambda_field", 0.0, 0.5),
        ("stages.operator.warmup_steps_ratio", 0.0, 0.5), ("stages.diff_residual.warmup_steps_ratio", 0.0, 0.5),
        ("stages.autoencoder.warmup_steps_ratio", 0.0, 0.5)))
    path = write(tmp_path, f"params:\n{others}  {BEAM}  {CANDS}")
    reps = space_mod.representative_values(load_space(path), base)
    assert math.prod(len(v) for v in reps.values()) > space_mod.COMBO_CAP
    with pytest.raises(SearchSpaceError, match=r"ttc.beam_width = [56].*ttc.candidates = 4"):
        load_space(path, base)


def _shipped(name: str, profile: str, tmp_path: Path):
    """The space and base config of sweeps/<name>.py under a profile, as prepare() builds them."""
    from ups.config import to_dict
    from ups.tune.prepare import prepare
    from tests.fixtures.modules import sweep_script

    mod = sweep_script(name)
    args = [f"profile={profile}", f"storage_path={tmp_path / 'runs'}"]
    if name not in ("round_c", "round_d"):
        return prepare(name, args, mod.DEFAULTS)
    s = load_sweep_config(name, args, mod.DEFAULTS)  # rounds C and D start from a champion: the profile's base
    champ = tmp_path / "champion.json"
    champ.write_text(json.dumps({"run_id": "c", "score": 0.1, "checkpoint": "/c", "data_hash": "d",
                                 "config": to_dict(load_config(s.trial))}))
    return prepare(name, [*args, f"champion={champ}"], mod.DEFAULTS, around_champion=True)


@pytest.mark.parametrize("profile", ["smoke", "full"])
@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_every_combination_of_the_shipped_spaces_is_valid(path: Path, profile: str, tmp_path: Path) -> None:
    """Each shipped space, on the base config its sweep script uses under each profile, passes the
    combination check (prepare runs it), and its worst corners materialize as a trial would."""
    from ups.tune.space import representative_values

    p = _shipped(path.stem, profile, tmp_path)
    reps = representative_values(p.space, p.base)
    assert set(reps) == set(p.space.params)
    for pick in (0, -1):  # every param at its first / last representative value
        cfg, _ = p.space.materialize(p.base, {k: v[pick] for k, v in reps.items()})
        assert cfg.ttc.beam_width <= cfg.ttc.candidates and cfg.operator.hidden_dim % cfg.operator.heads == 0


def test_a_searched_stage_that_trains_no_epochs_is_refused(tmp_path: Path) -> None:
    """round_a with stages.operator.epochs=0 ran a whole sweep of one model (its searched operator lr, warmup,
    EMA and betas are never used); refused before Ray, unless the space searches that stage's epochs too."""
    from ups.tune.prepare import prepare

    with pytest.raises(ConfigError, match=r"round_a.yaml: params stages.operator.optimizer.lr, .* belong to stage "
                                          r"'operator', which trains 0 epochs .* Fix: stages.operator.epochs=<n ≥ 1>"):
        prepare("round_a", ["stages.operator.epochs=0", f"storage_path={tmp_path}"])
    prepare("round_a", ["stages.diff_residual.epochs=0", "stages.consistency_distill.epochs=0",
                        f"storage_path={tmp_path}"])  # only derived copies there
    ttc = write(tmp_path, "params:\n  ttc.threshold: {dist: uniform, low: 0.2, high: 0.5}\n", "ttc.yaml")
    with pytest.raises(ConfigError, match=r"params ttc.threshold tune test-time conditioning, which is off here "
                                          r"\(ttc.enabled=false\).* Fix: ttc.enabled=true"):
        prepare("round_a", ["ttc.enabled=false", f"space={ttc}", f"storage_path={tmp_path}"])
    prepare("round_a", [f"space={ttc}", f"storage_path={tmp_path}"])
    space = write(tmp_path, "params:\n  stages.operator.epochs: {dist: choice, values: [0, 2]}\n"
                            "  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-3}\n", "e.yaml")
    from ups.config import load_config
    from ups.tune.prepare import check_searched_stages_train

    check_searched_stages_train(load_space(space), load_config(["stages.operator.epochs=0"]))  # epochs searched too


def test_resume_of_a_folder_without_state_is_refused_before_data(tmp_path: Path) -> None:
    """resume=true name=<typo> generated the data and trained the baselines before it found no Tune state."""
    from ups.tune.launcher import run_round

    cache, lb = tmp_path / "cache", tmp_path / "lb.csv"
    with pytest.raises(ConfigError, match=r"resume=true: '.*/runs/nope' holds no restorable sweep state: .* Fix: run "
                                          r"the same command without resume=true to start it \(name=nope is free\)"):
        run_round("round_a", [f"storage_path={tmp_path / 'runs'}", "name=nope", "resume=true", f"leaderboard={lb}",
                              f"data.cache_dir={cache}", "wandb.enabled=false"])
    assert not lb.exists() and not list(cache.rglob("*.h5*")), "data or baselines were computed first"


def test_resume_without_name_after_a_sweep_stopped_in_its_data_names_that_sweep(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new sweep stopped while it made its data or baselines left no folder, so resume=true without name= took the
    newest earlier sweep with Tune state, a finished one, redid its promotion and exited 0. Its folder (with the
    record) now exists before the data: the resume finds it and says it has nothing to resume."""
    from ups.tune import launcher

    runs = tmp_path / "runs"
    done = runs / "round_a-20261201-000000"  # an earlier sweep that reached its trials
    done.mkdir(parents=True)
    (done / "tuner.pkl").write_bytes(b"\x80\x04N.")
    (done / "experiment_state-2026-12-01_00-00-00.json").write_text('{"trial_data": []}')
    args = [f"storage_path={runs}", f"leaderboard={tmp_path / 'lb.csv'}", f"report_dir={tmp_path / 'r'}",
            f"champion={tmp_path / 'c.json'}", "wandb.enabled=false"]

    def refused(base: object) -> None:  # a data file the protocol refuses: a refused command, no sweep
        raise ConfigError("data.path: not a PDEBench file")

    monkeypatch.setattr(launcher, "load_data", refused)
    with pytest.raises(ConfigError, match="not a PDEBench file"):
        launcher.run_round("round_a", args)
    assert [d.name for d in runs.iterdir()] == [done.name], "a refused sweep left its folder"

    def stopped(base: object) -> None:  # the driver stopped while it made the data
        raise KeyboardInterrupt

    monkeypatch.setattr(launcher, "load_data", stopped)
    with pytest.raises(KeyboardInterrupt):
        launcher.run_round("round_a", args)
    new = [d.name for d in runs.iterdir() if d.name != done.name]
    assert len(new) == 1 and (runs / new[0] / "ups_sweep.json").is_file()
    with pytest.raises(ConfigError, match=rf"resume=true: '.*/runs/{new[0]}' holds no restorable sweep state: .* "
                                          rf"name= the sweep you meant"):
        launcher.run_round("round_a", [*args, "resume=true"])
    assert not (tmp_path / "lb.csv").exists()


def test_unwritable_outputs_are_refused_before_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """leaderboard=/proc/lb.csv failed with a FileNotFoundError traceback after the data and the baselines;
    the leaderboard, champion.json and report folder are now checked before anything is spent."""
    from ups.tune.prepare import prepare

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    ok = [f"storage_path={tmp_path / 'runs'}", f"leaderboard={tmp_path / 'r' / 'lb.csv'}",
          f"champion={tmp_path / 'r' / 'champion.json'}", f"report_dir={tmp_path / 'r'}"]
    for key, bad, kind in [("leaderboard", blocker / "lb.csv", "file path"), ("leaderboard", tmp_path, "file path"),
                           ("champion", blocker / "c.json", "file path"), ("report_dir", blocker / "rep", "folder"),
                           ("wandb.dir", blocker / "wb", "folder")]:
        with pytest.raises(ConfigError, match=rf"{key}={re.escape(str(bad))}: the sweep could not write there .* "
                                              rf"Fix: {key}=<a writable {kind}>"):
            prepare("round_a", [*ok, f"{key}={bad}"])
    prepare("round_a", [*ok, f"report_dir={blocker / 'rep'}", "write_report=false"])  # not written: not checked
    # W&B's dir: a bad one used to disable logging after ray.init, and the sweep ran without it
    monkeypatch.setenv("WANDB_MODE", "offline")  # checked unless W&B is off (auto mode reads WANDB_MODE)
    prepare("round_a", [*ok, f"wandb.dir={blocker / 'wb'}", "wandb.enabled=false"])
    prepare("round_a", [*ok, f"wandb.dir={blocker / 'wb'}", "wandb.mode=disabled"])
    monkeypatch.setenv("WANDB_DIR", str(blocker / "env"))
    with pytest.raises(ConfigError, match=rf"\$WANDB_DIR={re.escape(str(blocker / 'env'))}: the sweep could not "
                                          r"write there .* \(or unset it\) or wandb.enabled=false"):
        prepare("round_a", ok)
    prepare("round_a", [*ok, f"wandb.dir={tmp_path / 'r'}"])  # wandb.dir wins over $WANDB_DIR
    monkeypatch.delenv("WANDB_DIR")
    prepare("round_a", [*ok, f"champion={blocker / 'c.json'}", "promotion.top_k=0"])
    assert not list((tmp_path / "r").glob(".ups-probe-*")) and (tmp_path / "r").is_dir()
    # the leaderboard's lock file made a folder (by hand, a bad copy): a traceback after the data and baselines
    (tmp_path / "r" / "lb.csv.lock").mkdir()
    with pytest.raises(ConfigError, match=r"leaderboard=.*lb\.csv: its lock file .*lb\.csv\.lock cannot be opened .* "
                                          r"Fix: remove .*lb\.csv\.lock"):
        prepare("round_a", ok)


@pytest.mark.parametrize("text, why", [
    ('run_id,nrmse\nr1,0.1\n"unterminated,0.2,x\nr3,0.3\n', "cannot be read as CSV"),
    ("run_id;nrmse;label\nr1;0.1;a\n", "has no 'run_id'/'nrmse' columns .*another separator"),
    # cat a.csv b.csv: a report counted 8 trials for 4 and drew the second header as a row
    ("run_id,nrmse\nr1,0.1\nrun_id,nrmse\nr1,0.1\n", r"has its header line again as a row \(line 3\)"),
    ("run_id,nrmse\nr1,0.1\nr2,0.2\nr1,0.1\n", r"has 1 run_id\(s\) on more than one row \(e\.g\. r1\).*drop_duplicates"),
    # a hand edit: the sweep ran in full, then its summary failed formatting the cell
    ("run_id,nrmse,val_nrmse\nr1,0.1,0.1\nr2,0.2,abc\nr3,,nan\n",
     r"has 1 non-numeric 'val_nrmse' cell\(s\) \(e\.g\. 'abc' on line 3, run r2\); the column holds numbers"),
])
def test_a_leaderboard_the_sweep_cannot_read_is_refused_before_data(tmp_path: Path, text: str, why: str) -> None:
    """The sweep adds its rows to the leaderboard after the data and baselines: a file it cannot parse failed
    there with a pandas traceback, and a ';'-separated one (a spreadsheet's save) was rewritten into UPS's
    columns. Both are refused by prepare(), before Ray and data, with the file left as it was."""
    from ups.tune.prepare import prepare

    lb = tmp_path / "lb.csv"
    lb.write_text(text)
    with pytest.raises(ConfigError, match=rf"leaderboard={re.escape(str(lb))}: the file {why}.*changed nothing\. "
                                          rf"Fix: repair it, move it aside .*mv {re.escape(str(lb))} "):
        prepare("round_a", [f"storage_path={tmp_path / 'runs'}", f"leaderboard={lb}", f"report_dir={tmp_path / 'r'}",
                            f"champion={tmp_path / 'c.json'}"])
    assert lb.read_text() == text and not (tmp_path / "runs").exists()
    lb.write_text("")  # an empty file, like a missing one, is started afresh
    prepare("round_a", [f"storage_path={tmp_path / 'runs'}", f"leaderboard={lb}", f"report_dir={tmp_path / 'r'}",
                        f"champion={tmp_path / 'c.json'}"])


def test_a_champion_record_the_promotion_cannot_read_is_refused_before_data(tmp_path: Path) -> None:
    """The promotion reads champion.json after every trial has run: a torn or hand-edited file failed the round
    there. It is refused by prepare() instead, with the history's last record offered as the fix."""
    from ups.tune.prepare import prepare

    champ = tmp_path / "champion.json"
    args = [f"storage_path={tmp_path / 'runs'}", f"leaderboard={tmp_path / 'lb.csv'}", f"report_dir={tmp_path / 'r'}",
            f"champion={champ}"]
    for text, why in [('{"run_id": "x", "config":', "not valid JSON"), ('["x"]', "a JSON list, not an object"),
                      # hand-written: rounds C/D took it, then promotion kept it forever ("other data") and
                      # round C's last line died on o.champion['score'] after the whole sweep
                      ('{"run_id": "x", "checkpoint": "/c", "config": {"seed": 1}}', "missing 'score', 'data_hash'"),
                      ('{"run_id": "x", "checkpoint": "/c", "config": {"seed": 1}, "data_hash": "d", "score": "low"}',
                       r"missing 'score \(a number\)'")]:
        champ.write_text(text)
        with pytest.raises(ConfigError, match=rf"champion record is {why}.*Fix: move it aside \(mv "):
            prepare("round_a", args)
        assert champ.read_text() == text
    (tmp_path / "champion_history.jsonl").write_text('{"run_id": "x"}\n')
    with pytest.raises(ConfigError, match=r"Fix: restore the last champion from .*champion_history.jsonl \(tail -n 1"):
        prepare("round_a", args)
    prepare("round_a", [*args, "promotion.top_k=0"])  # a round that promotes nothing never reads it


def test_a_sweep_killed_before_tunes_first_state_can_be_started_again(tmp_path: Path) -> None:
    """Tune writes tuner.pkl when the Tuner is built and its first experiment state seconds later. A driver killed
    in between (seen with kill -9) left a folder that resume=true crashed on inside Ray ("no search space has been
    defined") and that a new run refused as "already holds a sweep": neither command could finish the sweep."""
    from ups.tune.launcher import check_sweep_folder
    from ups.tune.prepare import prepare

    args = [f"storage_path={tmp_path / 'runs'}", f"leaderboard={tmp_path / 'lb.csv'}", f"report_dir={tmp_path / 'r'}",
            f"champion={tmp_path / 'c.json'}"]
    folder = tmp_path / "runs" / "k1"
    folder.mkdir(parents=True)
    (folder / "tuner.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(ConfigError, match=r"stopped before Tune saved its first state.*Fix: run the same command "
                                          r"without resume=true and with name=k1"):
        check_sweep_folder(prepare("round_a", [*args, "name=k1", "resume=true"]), "k1")
    check_sweep_folder(prepare("round_a", [*args, "name=k1"]), "k1")  # starts it again
    (folder / "experiment_state-2026-12-05_01-00-00.json").write_text('{"trial_data": []}')
    with pytest.raises(ConfigError, match=r"already holds a sweep\. Fix: resume=true"):
        check_sweep_folder(prepare("round_a", [*args, "name=k1"]), "k1")
    check_sweep_folder(prepare("round_a", [*args, "name=k1", "resume=true"]), "k1")


def test_a_warm_start_from_a_pbt_sweep_is_refused(tmp_path: Path) -> None:
    """A PBT trial's score comes from a schedule of values: told to TPE with its last config, it taught TPE
    pairs that never trained together."""
    from ups.tune.launcher import run_round

    old = tmp_path / "runs" / "round_a-20261201-000001"
    old.mkdir(parents=True)
    (old / "ups_sweep.json").write_text(json.dumps({"round": "round_a", "sweep": {"scheduler.name": "pbt"}, "trial": {}}))
    (old / "tuner.pkl").write_bytes(b"\x80\x04N.")  # it reached its trials
    (old / "experiment_state-2026-12-01_00-00-01.json").write_text('{"trial_data": []}')
    stopped = tmp_path / "runs" / "round_a-20261202-000001"  # newer, stopped in its data: no trials to be told
    stopped.mkdir()
    (stopped / "ups_sweep.json").write_text(json.dumps({"round": "round_a", "sweep": {}, "trial": {}}))
    with pytest.raises(ConfigError, match=r"warm_start=round_a-20261201-000001: that sweep ran PBT.*Fix: warm-start "
                                          r"from an ASHA"):
        run_round("round_a", [f"storage_path={tmp_path / 'runs'}", f"leaderboard={tmp_path / 'lb.csv'}",
                              f"champion={tmp_path / 'c.json'}", f"report_dir={tmp_path / 'r'}",
                              "searcher.warm_start=latest", "wandb.enabled=false"])
    assert not (tmp_path / "lb.csv").exists()


def test_a_warm_start_of_a_ttc_space_leaves_out_trials_without_val_nrmse_ttc(tmp_path: Path, monkeypatch) -> None:
    """A sweep that searches ttc.* keys tells TPE each trial's val_nrmse_ttc; warm-started from a sweep whose
    trials finished before that figure was reported, it told TPE their plain val_nrmse, another figure (one the
    ttc.* keys cannot move) mixed with its own trials'. Such trials are now left out, as the docs say."""
    import types

    import pandas as pd

    import ups.reports.experiment as experiment
    from ups.config import load_config
    from ups.tune.warm_start import _finished_trials

    space_file = tmp_path / "ttc.yaml"
    space_file.write_text("params:\n  ttc.threshold: {dist: uniform, low: 0.0, high: 0.5}\n")
    space = load_space(space_file, load_config([]))

    def trial(value: float, ttc: float | None) -> types.SimpleNamespace:
        row = {"final": 1, "val_nrmse": value, **({"val_nrmse_ttc": ttc} if ttc is not None else {})}
        return types.SimpleNamespace(history=pd.DataFrame([{"final": 0, "val_nrmse": 0.9}, row]),
                                     config={"ttc.threshold": 0.2}, error=None)

    old = [trial(0.3, None), trial(0.4, None)]  # finished before val_nrmse_ttc: no such column
    monkeypatch.setattr(experiment, "load_experiment", lambda path: types.SimpleNamespace(trials=old))
    assert _finished_trials("x", space) == ([], 2)
    new = [trial(0.3, 0.25), trial(0.4, 0.35)]
    monkeypatch.setattr(experiment, "load_experiment", lambda path: types.SimpleNamespace(trials=new))
    assert _finished_trials("x", space) == ([({"ttc.threshold": 0.2}, 0.25), ({"ttc.threshold": 0.2}, 0.35)], 0)


def test_a_warm_start_tells_only_finished_trials_inside_the_space(tmp_path: Path, monkeypatch) -> None:
    """TPE is told a trial's final score only: not the last epoch of one ASHA or a gate stopped, not one that
    errored or scored NaN, not one whose values lie outside this space (a narrowed range); and the base configs
    compare without the keys either sweep searches and without the training seed."""
    import types

    import pandas as pd

    import ups.reports.experiment as experiment
    from ups.config import load_config
    from ups.tune.warm_start import _base_differences, _finished_trials

    space_file = tmp_path / "s.yaml"
    space_file.write_text("reference:\n  stages.operator.optimizer.lr: 3.0e-4\n"
                          "params:\n  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-3}\n")
    space = load_space(space_file, load_config([]))

    def trial(lr: float, rows: list[dict], error: str | None = None) -> types.SimpleNamespace:
        return types.SimpleNamespace(history=pd.DataFrame(rows), config={"stages.operator.optimizer.lr": lr},
                                     error=error)

    done = [{"final": 0, "val_nrmse": 0.9}, {"final": 1, "val_nrmse": 0.3}]
    trials = [trial(3e-4, done),
              trial(3e-4, [{"final": 0, "val_nrmse": 0.5}]),  # stopped early: no final report
              trial(3e-4, done, error="RuntimeError"),  # errored after its final report
              trial(3e-4, [{"final": 0, "val_nrmse": 0.9}, {"final": 1, "val_nrmse": float("nan")}]),
              trial(5e-3, done)]  # outside this space's lr range
    monkeypatch.setattr(experiment, "load_experiment", lambda path: types.SimpleNamespace(trials=trials))
    assert _finished_trials("x", space) == ([({"stages.operator.optimizer.lr": 3e-4}, 0.3)], 4)
    a = {"stages.operator.optimizer.lr": 1e-3, "training.seed": 0, "latent.dim": 16}
    b = {"stages.operator.optimizer.lr": 3e-4, "training.seed": 7, "latent.dim": 16}
    assert _base_differences(a, b, {"stages.operator.optimizer.lr"}) == []
    assert _base_differences(a, {**b, "latent.dim": 32}, set()) == [
        "latent.dim: 16 → 32", "stages.operator.optimizer.lr: 0.001 → 0.0003"]


def test_a_warm_start_refuses_another_data_version_unless_it_read_a_data_file(tmp_path: Path, monkeypatch) -> None:
    """An earlier sweep whose record names another data generator version scored its trials on other data from the
    same data.* settings: refused, naming the version. One that read a data file (data.path) read the same data;
    and ``latest`` is never the sweep itself (``current``)."""
    import types

    import pandas as pd

    import ups.reports.experiment as experiment
    from ups.code_version import code_version
    from ups.config import load_config
    from ups.tune.warm_start import warm_points

    space_file = tmp_path / "s.yaml"
    space_file.write_text("reference:\n  stages.operator.optimizer.lr: 3.0e-4\n"
                          "params:\n  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-3}\n")
    space = load_space(space_file, load_config([]))
    runs = tmp_path / "runs"
    now = code_version()["data_version"]
    for name, version in (("round_a-20261201-000000", f"{now}-old"), ("round_a-20261202-000000", now)):
        (runs / name).mkdir(parents=True)
        (runs / name / "experiment_state-2026-12-01_00-00-00.json").write_text('{"trial_data": []}')
        (runs / name / "ups_sweep.json").write_text(json.dumps({"round": "round_a", "sweep": {}, "trial": {}, "code": {
            "commit": "1c830aa0b1c2", "data_version": version}}))
    history = pd.DataFrame([{"final": 1, "val_nrmse": 0.3}])
    monkeypatch.setattr(experiment, "load_experiment", lambda path: types.SimpleNamespace(trials=[types.SimpleNamespace(
        history=history, config={"stages.operator.optimizer.lr": 3e-4}, error=None)]))
    searcher = types.SimpleNamespace(warm_start="round_a-20261201-000000", name="optuna")
    p = types.SimpleNamespace(scfg=types.SimpleNamespace(searcher=searcher, round="round_a"), storage_path=str(runs),
                              filesystem=None, display_storage=str(runs), space=space)
    with pytest.raises(ConfigError, match=r"warm_start=round_a-20261201-000000: that sweep ran on UPS Sweeps commit "
                                          r"1c830aa0b1c2 \(data version .*-old\).*TPE would be told scores on other"):
        warm_points(p, "round_a-new", {"trial": {}})
    on_file = {"data.path": "/data/b.hdf5"}
    (runs / "round_a-20261201-000000" / "ups_sweep.json").write_text(json.dumps({
        "round": "round_a", "sweep": {}, "trial": on_file, "code": {"data_version": f"{now}-old"}}))
    points, _, name = warm_points(p, "round_a-new", {"trial": on_file})
    assert points == [({"stages.operator.optimizer.lr": 3e-4}, 0.3)] and name == "round_a-20261201-000000"
    searcher.warm_start = "latest"  # the newest folder of the round is this sweep's own: the one before it is told
    assert warm_points(p, "round_a-20261202-000000", {"trial": on_file})[2] == "round_a-20261201-000000"
