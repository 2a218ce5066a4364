"""Reading Tune's experiment state on ``storage_path`` (what ``Tuner.restore`` resumes from).

Tune saves its state (``experiment_state-<session>.json``: every trial, its status and checkpoints) in a
driver-local staging folder (``<ray temp>/session_*/artifacts/<ts>/<experiment>/driver_artifacts``) and
copies it to storage in a background thread; the copy is not atomic, so a driver killed during it leaves
a cut-off file that ``Tuner.restore`` cannot parse. ``repair_cut_off_state`` puts back the intact staging
copy when this machine still has it (local Ray, or the head node of a cluster).
"""
from __future__ import annotations

import fnmatch
import glob
import json
import os
import posixpath
import re
from pathlib import Path
from typing import Any, Callable, Iterator

def _newest_state_path(experiment_path: str, fs: Any = None) -> tuple[Any, str | None]:
    """(the pyarrow filesystem, fs path of the newest experiment state on storage or None)."""
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint
    from ray.train._internal.storage import get_fs_and_path

    try:
        fs, fs_path = get_fs_and_path(experiment_path, storage_filesystem=fs)
        return fs, _find_newest_experiment_checkpoint(fs_path, fs)
    except (OSError, ValueError):
        return fs, None


def has_state(experiment_path: str, fs: Any = None) -> bool:
    """Whether Tune saved an experiment state there: the sweep reached its trials and can be restored (a folder
    with only ``tuner.pkl`` was stopped before Tune's first save; one with only the sweep's record, before Tune)."""
    return _newest_state_path(experiment_path, fs)[1] is not None


def newest_state(experiment_path: str, fs: Any = None) -> tuple[str | None, dict[str, Any] | None]:
    """(fs path of the newest experiment state on storage or None, its JSON or None when unreadable)."""
    fs, path = _newest_state_path(experiment_path, fs)
    if path is None:
        return None, None
    try:
        with fs.open_input_stream(path) as f:
            state = json.loads(f.read())
        return path, state if isinstance(state, dict) and "trial_data" in state else None
    except (OSError, ValueError):
        return path, None


def storage_state_checkpoints(experiment_path: str, fs: Any = None) -> dict[str, str | None] | None:
    """{trial_id: fs path of its latest checkpoint, or None} as the newest state on storage records them.

    None when there is no readable state (not synced yet, or read while being copied)."""
    from ray.tune.utils.serialization import _loads_with_cloudpickle

    _, state = newest_state(experiment_path, fs)
    if state is None:
        return None
    out: dict[str, str | None] = {}
    try:
        for trial_json, runtime_json in state["trial_data"]:
            trial_id = json.loads(trial_json)["trial_id"]
            manager = _loads_with_cloudpickle(runtime_json).get("checkpoint_manager")
            latest = manager.latest_checkpoint_result if manager is not None else None
            out[trial_id] = latest.checkpoint.path if latest is not None and latest.checkpoint else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return out


# the other state files Tune copies to storage with it (the searcher's and the callbacks'): pickles; one cut off made
# Tune log "Failed to restore the run state" and start the experiment again from nothing, which hung the resume
TUNER_FILE = "tuner.pkl"  # the Tuner as it was built (Tuner.restore unpickles it first)
PICKLED_STATE_FILES = ("basic-variant-state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl",
                       "callback-states-*.pkl")


def _is_experiment_state(data: bytes) -> bool:
    try:
        return "trial_data" in json.loads(data)
    except ValueError:
        return False


def _unpickle_error(data: bytes) -> Exception | None:
    from ray import cloudpickle

    try:
        cloudpickle.loads(data)
    except Exception as e:
        return e
    return None


def _names_missing_code(e: Exception | None) -> bool:
    """A whole pickle that names a module or function this code does not have: written by another version of UPS
    Sweeps (``Can't get attribute '_trial_dirname' on <module 'ups.tune.launcher'>``), not cut off."""
    return isinstance(e, (AttributeError, ImportError)) and re.search(r"'ups[.']", str(e)) is not None


def _names_missing_module(e: Exception | None) -> bool:
    """A whole pickle that names a module or attribute this environment does not have (``_names_missing_code``: one
    of UPS Sweeps'; else another package's, e.g. a resume in a venv without that package or with another version)."""
    return isinstance(e, (AttributeError, ImportError))


def _unpickles(data: bytes) -> bool:
    """Whether ``data`` is a whole pickle: one naming code this environment lacks is whole (``foreign_state``)."""
    e = _unpickle_error(data)
    return e is None or _names_missing_module(e)


def staging_copies(experiment_name: str, state_file: str, ray_temp_dir: str,
                   intact: Callable[[bytes], bool] = _is_experiment_state) -> list[Path]:
    """Intact driver-staging copies of ``state_file`` on this machine, newest first."""
    pattern = os.path.join(ray_temp_dir, "session_*", "artifacts", "*", experiment_name, "driver_artifacts", state_file)
    found = []
    for p in map(Path, glob.glob(pattern)):
        try:
            if intact(p.read_bytes()):
                found.append(p)
        except OSError:
            continue
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _newest_pickles(experiment_path: str, fs: Any, patterns: tuple[str, ...]) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of the newest file on storage of each of ``patterns`` (the one Tune restores)."""
    from pyarrow import fs as pafs
    from ray.train._internal.storage import get_fs_and_path

    try:
        fs, fs_path = get_fs_and_path(experiment_path, storage_filesystem=fs)
        names = [posixpath.basename(i.path) for i in fs.get_file_info(pafs.FileSelector(fs_path))
                 if i.type == pafs.FileType.File]
    except (OSError, ValueError):
        return
    for pattern in patterns:
        found = [n for n in names if fnmatch.fnmatch(n, pattern)]
        if not found:
            continue
        path = posixpath.join(fs_path, max(found))  # Tune's _load_newest_checkpoint: the greatest name
        try:
            with fs.open_input_stream(path) as f:
                data = f.read()
        except OSError:
            data = b""
        yield path, data


def cut_off_pickles(experiment_path: str, fs: Any = None) -> list[str]:
    """The newest file of each of ``PICKLED_STATE_FILES`` on storage (the one Tune restores) that cannot be read."""
    return [path for path, data in _newest_pickles(experiment_path, fs, PICKLED_STATE_FILES) if not _unpickles(data)]


def foreign_state(experiment_path: str, fs: Any = None) -> tuple[str, str, bool] | None:
    """(path, the error, whether the missing name is UPS Sweeps') of the first of Tune's pickled state files
    (``tuner.pkl`` and the newest of each of ``PICKLED_STATE_FILES``) that names code this environment does not
    have, or None.  Tune pickles the sweep's objects (trial folder namer, stopper, searcher, callbacks) by their
    module path: a sweep started by a version whose code lived elsewhere cannot be restored by this one
    (tests/test_pickled_names.py keeps the names released versions wrote), nor one started where another package
    was installed by an environment without it."""
    for path, data in _newest_pickles(experiment_path, fs, (TUNER_FILE, *PICKLED_STATE_FILES)):
        if _names_missing_module(e := _unpickle_error(data)):
            return path, str(e), _names_missing_code(e)
    return None


def repair_cut_off_state(experiment_path: str, fs: Any, experiment_name: str, ray_temp_dir: str) -> str | None:
    """If the newest state on storage is unreadable, replace it with this machine's intact staging copy.

    Returns what was done (a line for the log), None when the state was readable or absent; raises
    ``ValueError`` (with the fix) when it is unreadable and no intact copy is here."""
    done = [_repair_pickle(experiment_path, fs, experiment_name, ray_temp_dir, p)
            for p in cut_off_pickles(experiment_path, fs)]
    if dropped := drop_unreadable_error_pickles(experiment_path, fs):
        done.append(f"removed {len(dropped)} unreadable trial error file(s) (e.g. {dropped[0]}; a trial that failed on a "
                    f"full disk left it empty): their errors are read from error.txt")
    path, state = newest_state(experiment_path, fs)
    if path is None or state is not None:
        return "; ".join(done) or None
    name = path.rsplit("/", 1)[-1]
    copies = staging_copies(experiment_name, name, ray_temp_dir)
    if not copies:
        raise ValueError(
            f"Tune's experiment state '{path}' is cut off (the driver was killed while Tune was copying it "
            f"to storage) and this machine has no intact staging copy of it under "
            f"{ray_temp_dir}/session_*/artifacts/*/{experiment_name}/driver_artifacts/. Fix: copy that file "
            f"from the machine the killed driver ran on over '{path}', or delete '{path}' to resume from an "
            f"earlier state file of the experiment if there is one (finished trials stay on the leaderboard; "
            f"trials started since are run again)")
    _write_over(experiment_path, fs, path, copies[0])
    return "; ".join([*done, f"Tune's experiment state '{path}' was cut off (a driver killed mid-copy, or a full "
                              f"disk); restored it from {copies[0]}"])


def _repair_pickle(experiment_path: str, fs: Any, experiment_name: str, ray_temp_dir: str, path: str) -> str:
    """Replace the cut-off state file ``path`` (``cut_off_pickles``) with this machine's intact staging copy."""
    name = posixpath.basename(path)
    copies = staging_copies(experiment_name, name, ray_temp_dir, intact=_unpickles)
    if not copies:
        raise ValueError(
            f"Tune's state file '{path}' is cut off (the driver was killed while Tune was copying it to storage) "
            f"and this machine has no intact staging copy of it under "
            f"{ray_temp_dir}/session_*/artifacts/*/{experiment_name}/driver_artifacts/; Tune would start the sweep "
            f"again from nothing. Fix: copy that file from the machine the killed driver ran on over '{path}' "
            f"(finished trials stay on the leaderboard)")
    _write_over(experiment_path, fs, path, copies[0])
    return f"Tune's state file '{path}' was cut off (a driver killed mid-copy, or a full disk); restored it from {copies[0]}"


ERROR_PICKLE = "error.pkl"  # Ray 2.60's EXPR_ERROR_PICKLE_FILE: the pickled exception of a trial's last failure


def unreadable_error_pickles(experiment_path: str, fs: Any = None) -> list[str]:
    """``trial_*/error.pkl`` files on storage that do not unpickle: a trial that failed on a full disk left one of 0
    bytes, and Ray's ``ResultGrid`` unpickles every trial's (``Trial.get_pickled_error``), so the driver ended in
    ``EOFError: Ran out of input`` and every ``resume=true`` after it did too."""
    from pyarrow import fs as pafs
    from ray.train._internal.storage import get_fs_and_path

    try:
        fs, fs_path = get_fs_and_path(experiment_path, storage_filesystem=fs)
        found = [i.path for i in fs.get_file_info(pafs.FileSelector(fs_path, recursive=True))
                 if i.type == pafs.FileType.File and posixpath.basename(i.path) == ERROR_PICKLE
                 and posixpath.basename(posixpath.dirname(i.path)).startswith("trial_")]
    except (OSError, ValueError):
        return []
    out = []
    for path in found:
        try:
            with fs.open_input_stream(path) as f:
                data = f.read()
        except OSError:
            continue
        if not _unpickles(data):
            out.append(path)
    return out


def drop_unreadable_error_pickles(experiment_path: str, fs: Any = None) -> list[str]:
    """Delete ``unreadable_error_pickles`` (deleting works on a full disk too); Ray then reads the trial's error from
    its ``error.txt``. Returns the files deleted."""
    from ray.train._internal.storage import get_fs_and_path

    bad = unreadable_error_pickles(experiment_path, fs)
    if bad:
        fs, _ = get_fs_and_path(experiment_path, storage_filesystem=fs)
        for path in bad:
            try:
                fs.delete_file(path)
            except OSError:
                pass
    return bad



def _write_over(experiment_path: str, fs: Any, path: str, copy: Path) -> None:
    """Write the staging ``copy`` over the state file ``path`` on the experiment's storage."""
    from ray.train._internal.storage import get_fs_and_path

    fs, _ = get_fs_and_path(experiment_path, storage_filesystem=fs)
    with fs.open_output_stream(path) as out:
        out.write(copy.read_bytes())
