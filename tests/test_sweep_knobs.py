"""Searched knobs that must change what a trial trains (round A's EMA decay against the EMA's warm-up)."""
from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest
import torch

from ups.config import load_config
from ups.tune.prepare import ema_decay_notes, prepare
from ups.tune.space import load_space

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_round_a_ema_decays_are_reached_in_the_rounds_training(tmp_path: Path, profile: str) -> None:
    """Every EMA decay round A searches trains its own model at the round's step counts (smoke 390 operator
    steps, full 1,000): 0.999 / 0.9995 / 0.9999 sat above the warm-up's (1+t)/(10+t) cap all the way, so the
    three labels trained bit-identical weights."""
    sys.path.insert(0, str(REPO))
    defaults = importlib.import_module("sweeps.round_a").DEFAULTS
    p = prepare("round_a", [f"profile={profile}", f"leaderboard={tmp_path / 'lb.csv'}",
                            f"champion={tmp_path / 'champion.json'}", f"report_dir={tmp_path / 'reports'}",
                            f"storage_path={tmp_path / 'runs'}"], defaults)
    assert ema_decay_notes(p.space, p.base) == []


def test_ema_decays_above_the_warmup_cap_are_named(tmp_path: Path) -> None:
    space_file = tmp_path / "ema.yaml"
    space_file.write_text("params:\n  stages.operator.ema_decay: {dist: choice, values: [0.9, 0.999, 0.9999]}\n")
    base = load_config(["stages.operator.epochs=30", "stages.operator.batch_size=16", "data.n=256"])
    notes = ema_decay_notes(load_space(space_file, base), base)
    assert len(notes) == 1 and "values [0.999, 0.9999] train the same model" in notes[0]
    assert "390 optimizer steps of stages.operator" in notes[0] and "Fix: search decays below 0.9775" in notes[0]
    space_file.write_text("params:\n  stages.operator.ema_decay: {dist: choice, values: [0.9, 0.95, 0.999]}\n")
    assert ema_decay_notes(load_space(space_file, base), base) == []


@pytest.mark.parametrize("decays, same", [(("0.999", "0.9999"), True), (("0.5", "0.9999"), False)])
def test_ema_decays_at_or_above_the_cap_train_identical_weights(tmp_path: Path, decays: tuple[str, str],
                                                                same: bool) -> None:
    """What the note says, on a real (tiny) training: 9 operator steps, cap 10/19."""
    from ups.train.trainer import train

    g = torch.Generator().manual_seed(0)
    x = torch.linspace(0, 1, 33)[:-1]
    k, a = torch.randint(1, 4, (30, 1), generator=g), torch.rand(30, 1, generator=g)
    t = torch.linspace(0, 1, 10)[None, :, None]
    u = (a[:, :, None] * torch.sin(2 * torch.pi * (k[:, :, None] * x - 0.2 * t))) * torch.exp(-t)  # (30, 10, 32)
    data = types.SimpleNamespace(train=u[:18], val=u[18:24], test=u[24:], data_hash="tiny", source="tiny")
    base = ["preset=dim8", "data.initial_step=4", "training.num_threads=1", "training.val_max_samples=4",
            "stages.autoencoder.epochs=1", "stages.operator.epochs=3", "stages.diff_residual.epochs=0",
            "stages.consistency_distill.epochs=0", "eval.max_samples=0", "ttc.enabled=false",
            "stages.autoencoder.batch_size=6", "stages.operator.batch_size=6"]
    weights = []
    for i, d in enumerate(decays):
        res = train(load_config(base + [f"stages.operator.ema_decay={d}"]), run_dir=tmp_path / str(i), data=data)
        weights.append(torch.cat([p.flatten() for p in res.model.operator.parameters()]))
    assert torch.equal(weights[0], weights[1]) is same


def test_a_resume_refused_over_a_changed_profile_value_gives_a_fix_that_resumes(tmp_path: Path) -> None:
    """A smoke sweep started before the profile scored the whole test split (eval.max_samples 8 → -1) is refused
    on resume (its trials would mix test sets), and the fix printed was the command that started it, which the
    profile now runs with -1 as well: refused again. The fix now pins the value the sweep ran with."""
    from ups.config import ConfigError
    from ups.tune.sweep_record import check_resume, differences, sweep_record, write_record

    sys.path.insert(0, str(REPO))
    defaults = importlib.import_module("sweeps.round_a").DEFAULTS
    ov = ["profile=smoke", f"leaderboard={tmp_path / 'lb.csv'}", f"champion={tmp_path / 'champion.json'}",
          f"report_dir={tmp_path / 'reports'}", f"storage_path={tmp_path / 'runs'}"]
    now = {**sweep_record(prepare("round_a", ov, defaults), ov), "name": "round_a-old"}
    saved = {**now, "trial": {**now["trial"], "eval.max_samples": 8}}
    write_record(str(tmp_path / "runs"), None, "round_a-old", saved)
    with pytest.raises(ConfigError, match=r"eval.max_samples: 8 → -1.*Fix: .* eval.max_samples=8 name=round_a-old") as e:
        check_resume(str(tmp_path / "runs"), None, "round_a-old", str(tmp_path / "runs"), now)
    fix = str(e.value).split("sweeps/round_a.py ", 1)[1].split(" resume=true")[0].split()
    again = [o for o in fix if not o.startswith("name=")]
    assert differences(saved, sweep_record(prepare("round_a", again, defaults), again)) == []


def test_a_resume_fix_pins_changed_sweep_settings_and_quotes_its_command(tmp_path: Path) -> None:
    """The printed fix is a shell command: a saved override with a space in it split into two words when pasted,
    and a sweep setting the profile or the round's DEFAULTS changed since (num_samples here) was refused again by
    the fix, which pinned trial settings only."""
    import shlex

    from ups.config import ConfigError
    from ups.tune.sweep_record import check_resume, differences, sweep_record, write_record

    sys.path.insert(0, str(REPO))
    defaults = importlib.import_module("sweeps.round_a").DEFAULTS
    ov = ["profile=smoke", f"leaderboard={tmp_path / 'lb.csv'}", f"champion={tmp_path / 'champion.json'}",
          f"report_dir={tmp_path / 'my reports'}", f"storage_path={tmp_path / 'runs'}"]
    now = {**sweep_record(prepare("round_a", ov, defaults), ov), "name": "round_a-old"}
    assert now["sweep"]["num_samples"] != 7
    saved = {**now, "sweep": {**now["sweep"], "num_samples": 7}, "trial": {**now["trial"], "eval.max_samples": 8}}
    write_record(str(tmp_path / "runs"), None, "round_a-old", saved)
    with pytest.raises(ConfigError, match=r"num_samples: 7 → ") as e:
        check_resume(str(tmp_path / "runs"), None, "round_a-old", str(tmp_path / "runs"), now)
    command = str(e.value).split("Fix: resume with the command that started it (saved in ", 1)[1].split("): ", 1)[1]
    words = shlex.split(command)
    assert words[:2] == ["python", "sweeps/round_a.py"] and words[-1] == "resume=true"
    again = [o for o in words[2:-1] if not o.startswith("name=")]
    assert f"report_dir={tmp_path / 'my reports'}" in again
    assert differences(saved, sweep_record(prepare("round_a", again, defaults), again)) == []


def test_smallest_mirrors_largest_through_derived_rules(tmp_path: Path) -> None:
    """ema_decay_notes counts a stage's most optimizer steps from its smallest batch: a batch size copied or scaled
    from a searched one is as small as that one allows (it read the base config's value for a derived key)."""
    space_file = tmp_path / "batch.yaml"
    space_file.write_text("params:\n  stages.operator.batch_size: {dist: choice, values: [8, 16]}\n"
                          "derived:\n  stages.diff_residual.batch_size: {rule: copy, of: stages.operator.batch_size}\n"
                          "  stages.consistency_distill.batch_size: {rule: scale, of: stages.operator.batch_size, "
                          "factor: 0.5}\n")
    base = load_config(["stages.operator.batch_size=16", "stages.diff_residual.batch_size=32",
                        "stages.consistency_distill.batch_size=32"])
    space = load_space(space_file, base)
    assert [space.smallest(f"stages.{s}.batch_size", base) for s in ("operator", "diff_residual",
                                                                       "consistency_distill")] == [8, 8, 4]
    assert [space.largest(f"stages.{s}.batch_size", base) for s in ("operator", "diff_residual",
                                                                      "consistency_distill")] == [16, 16, 8]
    assert space.smallest("stages.autoencoder.batch_size", base) == base.stages.autoencoder.batch_size  # not searched


def test_the_resume_command_is_this_command_with_resume_and_the_name() -> None:
    from ups.tune.launcher import python_command, resume_command

    assert resume_command("round_a-1", ["sweeps/round_a.py", "num_samples=8", "name=old", "resume=false",
                                        "storage_path=/a b"]) == \
        f"{python_command()} sweeps/round_a.py num_samples=8 'storage_path=/a b' resume=true name=round_a-1"
    assert resume_command("round_b-2", ["/venv/bin/ups", "sweep", "round_b", "max_concurrent=2"]) == \
        "ups sweep round_b max_concurrent=2 resume=true name=round_b-2"
    assert resume_command("x", ["/usr/bin/pytest", "-q"]) == "the same command with resume=true name=x"
    # a notebook's kernel: its argv is no command to repeat (ipykernel imported in this process is no notebook)
    import ipykernel  # noqa: F401

    kernel = ["/venv/lib/python3.11/site-packages/ipykernel_launcher.py", "-f", "/tmp/kernel-1.json"]
    assert resume_command("x", kernel) == "the same command with resume=true name=x"
    assert resume_command("y", ["sweeps/round_a.py"]) == f"{python_command()} sweeps/round_a.py resume=true name=y"


def test_the_resume_command_names_the_interpreter_unless_it_is_the_python_on_the_path(monkeypatch) -> None:
    import shutil
    import sys

    from ups.tune.launcher import python_command

    monkeypatch.setattr(shutil, "which", lambda name: sys.executable)
    assert python_command() == "python"
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/python")
    assert python_command() == sys.executable


def test_a_sweep_too_short_for_optunas_model_says_so() -> None:
    """TPE (or GP) samples from its model only after searcher.n_startup_trials trials have finished; in the smoke
    round (4 trials, 2 at a time, 3 start-up) every trial is suggested before that, and nothing said so."""
    from ups.tune.tuner_build import startup_only_note
    from ups.tune.sweep_config import load_sweep_config

    smoke = load_sweep_config("round_a", [])
    assert (smoke.num_samples, smoke.searcher.n_startup_trials) == (4, 3)
    note = startup_only_note(smoke, 4, 2)
    assert note and note.startswith("searcher: TPE models no trial of this sweep: each of its 4 trials") and \
        "num_samples=7 or more" in note and "(the reference, Latin-hypercube points, then Optuna's random draws)" in note
    assert startup_only_note(smoke, 5, 2) is None  # the 5th is suggested when 3 have finished
    assert startup_only_note(smoke, 5, 3) is not None and startup_only_note(smoke, 4, 1) is None
    assert startup_only_note(smoke, 4, 2, warm=2) is None  # warm-start trials count towards the start-up
    gp = load_sweep_config("round_a", ["searcher.sampler=gp", "searcher.initial_design=random"])
    assert "GP models no trial" in startup_only_note(gp, 4, 2) and "(the reference, Optuna's random draws)" in \
        startup_only_note(gp, 4, 2)
    assert startup_only_note(load_sweep_config("round_a", ["searcher.name=random"]), 4, 2) is None


def test_resources_cpu_on_the_command_line_sets_the_threads_a_trial_trains_on() -> None:
    """resources.cpu=2 reserved two cores per trial while the smoke profile's training.num_threads=1 trained on
    one; an explicit training.num_threads still wins."""
    from ups.config import load_config
    from ups.tune.sweep_config import load_sweep_config

    def threads(overrides: list[str]) -> int:
        return int(load_config(load_sweep_config("round_a", overrides).trial).training.num_threads)

    assert threads([]) == 1 and threads(["resources.cpu=2"]) == 2 and threads(["resources.cpu=0.5"]) == 1
    assert threads(["resources.cpu=2", "training.num_threads=1"]) == 1


def test_the_pbt_concurrency_line_counts_the_reference_apart_from_the_population(capsys) -> None:
    from ups.tune.ray_session import round_concurrency
    from ups.tune.sweep_config import load_sweep_config

    s = load_sweep_config("round_a", ["scheduler.name=pbt", "num_samples=4"])
    round_concurrency(s, 2)
    assert "its 4 trials (a population of 3 and the reference trial" in capsys.readouterr().out
    s = load_sweep_config("round_a", ["scheduler.name=pbt", "num_samples=4", "searcher.start_at_reference=false"])
    round_concurrency(s, 2)
    assert "its population of 4 takes turns" in capsys.readouterr().out


def test_a_resume_with_another_fno_steps_is_refused(tmp_path: Path) -> None:
    """The FNO baseline's steps set the gates' limits (its row is the fallback baseline): a defining setting."""
    from ups.config import ConfigError
    from ups.tune.sweep_record import check_resume, sweep_record, write_record

    ov = [f"storage_path={tmp_path / 'runs'}"]
    saved = {**sweep_record(prepare("round_a", ov), ov), "name": "round_a-old"}
    assert saved["sweep"]["fno_steps"] == 120  # the smoke profile's
    write_record(str(tmp_path / "runs"), None, "round_a-old", saved)
    now = {**sweep_record(prepare("round_a", [*ov, "fno_steps=0"]), ov), "name": "round_a-old"}
    with pytest.raises(ConfigError, match=r"fno_steps: 120 → 0"):
        check_resume(str(tmp_path / "runs"), None, "round_a-old", str(tmp_path / "runs"), now)
    check_resume(str(tmp_path / "runs"), None, "round_a-old", str(tmp_path / "runs"), saved)  # the same: resumes
    # a sweep started before fno_steps existed trained its FNO for fno_budget_s: resumed under today's profile
    # (120 steps) it would score another FNO and overwrite its baseline row. Refused, with a fix that resumes
    old = {**saved, "sweep": {k: v for k, v in saved["sweep"].items() if k != "fno_steps"}}
    write_record(str(tmp_path / "runs"), None, "round_a-old", old)
    with pytest.raises(ConfigError, match=r"fno_steps: '\(unset\)' → 120") as e:
        check_resume(str(tmp_path / "runs"), None, "round_a-old", str(tmp_path / "runs"), saved)
    command = str(e.value).split("): ", 1)[1]
    assert "fno_steps=0" in command, command
    again = [*ov, "fno_steps=0"]
    check_resume(str(tmp_path / "runs"), None, "round_a-old", str(tmp_path / "runs"),
                 {**sweep_record(prepare("round_a", again), again), "name": "round_a-old"})
    # fno_budget_s on the command line trains for that budget (the profile's fno_steps gave way silently)
    assert prepare("round_a", [*ov, "fno_budget_s=60"]).scfg.fno_steps == 0
    assert prepare("round_a", [*ov, "fno_budget_s=60", "fno_steps=7"]).scfg.fno_steps == 7


def test_round_is_the_scripts_own() -> None:
    """`python sweeps/round_e.py round=round_a` ran round E's space as a sweep named round_a-…, with round A's rows,
    report folder and W&B group: refused now, from the command line and from a script's defaults."""
    from ups.config import ConfigError
    from ups.tune.sweep_config import load_sweep_config

    assert load_sweep_config("round_e", ["round=round_e"]).round == "round_e"  # naming its own round is harmless
    with pytest.raises(ConfigError, match=r"overrides: round=round_a, but this sweep is round round_e .*Fix: leave "
                                          r"round= out; to run round_a, run its script \(ups sweep round_a\)"):
        load_sweep_config("round_e", ["round=round_a"])
    with pytest.raises(ConfigError, match=r"sweeps/round_e.py defaults: round=round_b"):
        load_sweep_config("round_e", [], defaults={"round": "round_b"})


def test_a_rung_after_the_last_training_epoch_is_warned_of(tmp_path: Path) -> None:
    """grace_period=21 reduction_factor=2 max_t=60 on round A's smoke (42 epochs) put a rung at 42: a trial cut there
    has trained fully and only loses its final eval. The playbook's rounds keep their rungs before that."""
    from ups.tune.prepare import late_rung_notes

    store = f"storage_path={tmp_path / 'runs'}"
    p = prepare("round_a", [store, "scheduler.grace_period=21", "scheduler.reduction_factor=2", "scheduler.max_t=60"])
    notes = late_rung_notes(p.scfg, p.base, p.space)
    assert len(notes) == 1 and notes[0].startswith("ASHA rung(s) at training_iteration 42: every trial here has "
                                                   "trained all its 42 epochs") and "before 42" in notes[0], notes
    for profile in ("smoke", "full"):
        p = prepare("round_a", [store, f"profile={profile}"])
        assert late_rung_notes(p.scfg, p.base, p.space) == [], profile


def test_resume_checks_on_plain_records_pins_data_version_and_sweep_names() -> None:
    """The record's own rules, without a sweep: an edited space file is a difference; the pins leave out what the
    saved command typed and a setting added since that now runs at its default; a sweep of another data version
    is refused (a dirty tree's commit checked out without its suffix), unless it read a data file (data.path) or
    its record predates the version; a hand-named folder that starts like a timestamped one is not the newest."""
    from ups.code_version import checkout_fix, code_version
    from ups.config import ConfigError
    from ups.tune.sweep_record import check_data_version, differences, latest_sweep, resume_pins, schema_defaults

    d = schema_defaults()
    saved = {"space_sha1": "a", "space_file": "s.yaml", "sweep": {"num_samples": 4}, "trial": {"eval.max_samples": 8}}
    assert differences(saved, {**saved, "space_sha1": "b"}) == ["search space s.yaml → s.yaml (its content differs)"]
    now = {"sweep": {"num_samples": 4, "fno_steps": d["sweep"]["fno_steps"]}, "trial": {"eval.max_samples": -1}}
    assert resume_pins(saved, now, []) == ["eval.max_samples=8"]
    assert resume_pins(saved, now, ["eval.max_samples=8"]) == []
    assert resume_pins(saved, {**now, "sweep": {"num_samples": 4, "fno_steps": 120}}, []) == [
        f"fno_steps={d['sweep']['fno_steps']}", "eval.max_samples=8"]
    other = {"code": {"commit": "1c830aa0b1c2-dirty", "data_version": f"{code_version()['data_version']}-old"},
             "trial": {}}
    with pytest.raises(ConfigError, match=r"this code generates data version .*git checkout 1c830aa0b1c2, then"):
        check_data_version(other, "runs", "round_a-x")
    assert check_data_version({**other, "trial": {"data.path": "/data/burgers.hdf5"}}, "runs", "round_a-x") is None
    assert check_data_version({"trial": {}}, "runs", "round_a-x") is None
    assert checkout_fix(None, "round_a-20261201-093000").startswith(
        "git checkout $(git rev-list -1 --before='2026-12-01T09:30:00Z' HEAD)")
    assert latest_sweep(["round_a-20261201-000000", "round_a-20261203-000000-copy"], "round_a") == \
        "round_a-20261201-000000"
