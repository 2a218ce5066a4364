"""Tune pickles a sweep's objects (trial folder namer, stopper, scheduler, searcher, callbacks, loggers) into its
state files by module path: ``resume=true``, the notebook and ``Tuner.restore`` of a sweep a released version
started need every such name to resolve.  9d7ba65 moved ``ups.tune.launcher._trial_dirname`` and every earlier
sweep became unresumable (the upgrade trial, 2026-12-07).  ``RELEASED`` keeps each name a released version's Tune
state holds; a name may be added (a sweep test fails until it is), never dropped: a moved one keeps an alias."""
from __future__ import annotations

import binascii
import importlib
import io
import json
import pickle
from pathlib import Path

import pytest

RELEASED = frozenset({
    "ups.tune.concurrency:ClusterLimiter", "ups.tune.concurrency:VariantLimiter",
    "ups.tune.gates:GateLimits", "ups.tune.gates:GateTracker", "ups.tune.gates:PhysicsGateStopper",
    "ups.tune.launcher:_trial_dirname",  # before 9d7ba65; an alias of ups.tune.tuner_build.trial_dirname
    "ups.tune.live_study:LiveStudy", "ups.tune.live_study:StudyMirror", "ups.tune.live_study:_Trial",
    "ups.tune.live_study:_Written",
    "ups.tune.pbt:StagedPBT", "ups.tune.space:SearchSpace.clamp",  # PBT's scheduler and its custom_explore_fn
    "ups.tune.restore:ResumableASHA", "ups.tune.restore:ResumableFIFO", "ups.tune.restore:ResumableStopper",
    "ups.tune.gates:ComputeBudgetStopper",  # compute_budget_s
    "ups.tune.results:LeaderboardCallback", "ups.tune.results:RowContext",
    "ups.tune.retention:CheckpointRetention",
    "ups.tune.space:Param", "ups.tune.space:SearchSpace",
    "ups.tune.trial_logs:KeepingCSVLogger", "ups.tune.trial_logs:KeepingJsonLogger",
    "ups.tune.trial_logs:KeepingTBXLogger",
    "ups.tune.tuner_build:trial_dirname",
    "ups.tune.wandb_logging:WandbRoundLogger",
    "ups.tune.warm_start:WarmOptunaSearch",
})
STATE_PICKLES = ("tuner.pkl", "search_gen_state-*.json", "searcher-state-*.pkl", "callback-states-*.pkl",
                 "basic-variant-state-*.json")


def _resolve(entry: str) -> object:
    module, qualname = entry.split(":")
    obj: object = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("entry", sorted(RELEASED))
def test_every_name_a_released_sweeps_state_holds_still_resolves(entry: str) -> None:
    assert callable(_resolve(entry)), entry


def test_the_old_trial_folder_namer_is_the_new_one() -> None:
    from ups.tune.launcher import _trial_dirname
    from ups.tune.tuner_build import trial_dirname

    assert _trial_dirname is trial_dirname


def names_in_state(folder: Path) -> set[str]:
    """The ``ups.*`` names (``module:qualname``) that a sweep folder's Tune state files pickle, read by unpickling
    each (and the cloudpickled values in its experiment states), as ``Tuner.restore`` does."""
    import ray.cloudpickle  # noqa: F401  (the reducers cloudpickle's output names)

    names: set[str] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            if module.split(".")[0] == "ups":
                names.add(f"{module}:{name}")
            return super().find_class(module, name)

    def walk(o: object) -> None:
        if isinstance(o, dict):
            if o.get("_type") == "CLOUDPICKLE_FALLBACK":
                Recorder(io.BytesIO(binascii.unhexlify(o["value"]))).load()
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    files = [f for pattern in STATE_PICKLES for f in folder.glob(pattern)]
    assert any(f.name == "tuner.pkl" for f in files), sorted(p.name for p in folder.iterdir())
    for f in files:
        Recorder(io.BytesIO(f.read_bytes())).load()
    for f in folder.glob("experiment_state-*.json"):
        for trial_json, runtime_json in json.loads(f.read_text())["trial_data"]:
            walk(json.loads(trial_json))
            walk(json.loads(runtime_json))
    return names


def assert_released(folder: Path) -> None:
    """A sweep test's check: its Tune state names only RELEASED names (else: add the new one, and keep it)."""
    new = names_in_state(folder) - RELEASED
    assert not new, (f"{folder}'s Tune state pickles {sorted(new)}: add them to tests/test_pickled_names.py RELEASED, "
                     f"and keep them importable there from now on")


def test_a_state_naming_code_this_version_lacks_is_refused_as_another_versions_not_as_cut_off(tmp_path: Path) -> None:
    """A resume of a sweep whose Tune state names a function this version does not have: refused before data and
    baselines, naming the version in its record and the checkout, where it was called 'cut off' (with a fix, copy
    the file from the killed driver's machine, that could not work) after the data and baselines were made."""
    from types import SimpleNamespace

    from ray import cloudpickle

    from ups.config import ConfigError
    from ups.tune.launcher import check_state_code
    from ups.tune.tune_state import _unpickles, cut_off_pickles, foreign_state

    folder = tmp_path / "round_a-x"
    folder.mkdir()
    whole = cloudpickle.dumps({"ok": 1})
    (folder / "tuner.pkl").write_bytes(b"cups.tune.launcher\n_gone_since\n.")  # a GLOBAL this code lacks
    (folder / "searcher-state-2026-12-01_00-00-00.pkl").write_bytes(whole)
    (folder / "ups_sweep.json").write_text(json.dumps({"round": "round_a", "code": {
        "commit": "1c830aa0b1c2", "version": "0.1.0", "data_version": "1"}}))
    assert foreign_state(str(folder))[0].endswith("tuner.pkl")
    assert cut_off_pickles(str(folder)) == []
    p = SimpleNamespace(storage_path=str(tmp_path), filesystem=None)
    with pytest.raises(ConfigError, match=r"tuner.pkl' was written by another version \(UPS Sweeps commit "
                                          r"1c830aa0b1c2 \(data version 1\)\): it names code this version does not "
                                          r"have \(.*_gone_since.*\). Fix: resume with that version \(git checkout "
                                          r"1c830aa0b1c2, then the same command\)"):
        check_state_code(p, "round_a-x")
    # a cut-off file is still cut off (the staging-copy repair), and a whole one is neither
    assert not _unpickles(whole[: len(whole) // 2]) and _unpickles(whole)
    (folder / "tuner.pkl").write_bytes(whole)
    assert foreign_state(str(folder)) is None and check_state_code(p, "round_a-x") is None


def test_the_newest_state_file_is_the_one_checked_and_a_cut_off_one_is_not_another_versions(tmp_path: Path) -> None:
    """Tune restores the newest searcher state (the greatest name): a cut-off newest one behind a whole older one is
    cut off (the staging-copy repair), not passed over; a cut-off tuner.pkl is not 'written by another version' (a
    checkout would not help); a whole state naming UPS code this version lacks is another version's, not cut off;
    a missing module that is not UPS Sweeps' is no version's."""
    from ray import cloudpickle

    from ups.tune.tune_state import cut_off_pickles, foreign_state

    folder = tmp_path / "round_a-x"
    folder.mkdir()
    whole = cloudpickle.dumps({"ok": 1})
    (folder / "searcher-state-2026-12-01_00-00-00.pkl").write_bytes(whole)
    (folder / "searcher-state-2026-12-02_00-00-00.pkl").write_bytes(whole[: len(whole) // 2])
    assert [Path(p).name for p in cut_off_pickles(str(folder))] == ["searcher-state-2026-12-02_00-00-00.pkl"]
    (folder / "tuner.pkl").write_bytes(whole[: len(whole) // 2])
    assert foreign_state(str(folder)) is None
    (folder / "searcher-state-2026-12-02_00-00-00.pkl").write_bytes(b"cups.tune.launcher\n_gone_since\n.")
    (folder / "tuner.pkl").write_bytes(whole)
    assert cut_off_pickles(str(folder)) == []
    assert foreign_state(str(folder))[0].endswith("searcher-state-2026-12-02_00-00-00.pkl")
    # a missing module that is not UPS Sweeps' is no version's: the environment's (it was called cut off)
    (folder / "searcher-state-2026-12-02_00-00-00.pkl").write_bytes(b"cno_such_module_here\nf\n.")
    found = foreign_state(str(folder))
    assert found[0].endswith("searcher-state-2026-12-02_00-00-00.pkl") and found[2] is False, found
    assert cut_off_pickles(str(folder)) == []
    from types import SimpleNamespace

    from ups.config import ConfigError
    from ups.tune.launcher import check_state_code

    with pytest.raises(ConfigError, match=r"names a module this environment does not have \(No module named "
                                          r"'no_such_module_here'\).*Fix: resume in that environment"):
        check_state_code(SimpleNamespace(storage_path=str(tmp_path), filesystem=None), "round_a-x")


def test_only_a_missing_ups_name_is_another_versions() -> None:
    """A missing third-party module whose name holds "ups" (``groups_extra``) is not UPS Sweeps code of another
    version (the round-3 mutation review: a substring match said it was, with a checkout as the fix)."""
    from ups.tune.tune_state import _names_missing_code

    assert _names_missing_code(AttributeError("Can't get attribute '_trial_dirname' on <module 'ups.tune.launcher' "
                                              "from '/x/ups/tune/launcher.py'>"))
    assert _names_missing_code(ModuleNotFoundError("No module named 'ups.tune.old_module'"))
    assert _names_missing_code(ModuleNotFoundError("No module named 'ups'"))
    assert not _names_missing_code(ModuleNotFoundError("No module named 'groups_extra'"))
    assert not _names_missing_code(ValueError("'ups.x'")) and not _names_missing_code(None)
