"""What a sweep was started with, saved next to its Tune state, so that ``resume=true`` can refuse a command
that would continue it under other settings.

``Tuner.restore`` continues the saved trials with the trainable of the *resuming* command: a resume
without the original ``profile=full`` (or with another ``stages.operator.epochs``, space or searcher) would
train the rest of the sweep on other data or budgets, and mix them on one leaderboard.  At launch the
sweep writes ``ups_sweep.json`` (its command line, the trial base config, the space file's hash and the
settings that define which trials run) and a copy of the space file (``ups_space.yaml``); a resume compares
and, on a difference, fails before Ray starts with the keys that differ and the original command (with
``space=<that copy>`` when the space file was edited or updated since: the sweep continues in the space it
started in).  Operational settings may change on a resume
(resources, concurrency, W&B, reports, Ray address, data cache folder, device, threads).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import posixpath
import re
import shlex
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from ups.code_version import checkout_fix, code_version, describe, other_data_version
from ups.config import MACHINE_KEYS, ConfigError, flatten, override_key, to_dict

RECORD = "ups_sweep.json"
SPACE_COPY = "ups_space.yaml"  # the space file as the sweep started with it: a resume after the file changed
# trial config keys a resume may change: where and how the same trials run, not which
OPERATIONAL_KEYS = MACHINE_KEYS  # ups.config: they do not change what a trial trains
# sweep settings that decide which trials run and how they are cut
DEFINING_SWEEP_KEYS = ("num_samples", "time_budget_s", "compute_budget_s", "scheduler", "searcher", "gates",
                       "stage_cache", "baselines", "fno_budget_s", "fno_steps")  # the baseline rows set the gates' limits
# promotion settings that decide which trials run: promotion.seeds retrains each promoted configuration in an
# experiment of its own (seeds-<sweep>), which a resume restores as it was started; more seeds there never ran
DEFINING_PROMOTION_KEYS = ("seeds",)
# settings that existed before the record kept them: absent from an older record means unknown (not the
# default), so a sweep recorded then resumes whatever the resuming command says
RECORDED_LATER = ("baselines", "fno_budget_s", "promotion.seeds")


def sweep_record(p: Any, overrides: Sequence[str]) -> dict[str, Any]:
    """The record of a prepared sweep (``ups.tune.prepare.Prepared``) and the command's ``overrides``."""
    s = p.scfg
    base = {k: v for k, v in flatten(to_dict(p.base)).items() if not k.startswith(OPERATIONAL_KEYS)}
    record = {"round": s.round, "overrides": [o for o in overrides if not o.startswith("resume=")],
              "space_file": str(p.space.path), "space_sha1": hashlib.sha1(Path(p.space.path).read_bytes()).hexdigest(),
              "sweep": _sweep_section(s), "trial": _jsonable(base),
              "code": code_version()}  # which code: a resume refused for a change of code names it
    centre = getattr(p, "centre", None)
    if centre:  # rounds C/D: the champion record they started from (a resume starts from it again, not a newer one)
        record["champion"] = _jsonable({k: centre.get(k) for k in ("run_id", "round", "score", "data_hash", "config",
                                                                    "pbt_schedule") if k in centre})
    return record


def _sweep_section(s: Any) -> dict[str, Any]:
    """A sweep config's defining settings, flattened to dotted keys and JSON values."""
    sweep = flatten({k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                     for k, v in ((k, getattr(s, k)) for k in DEFINING_SWEEP_KEYS)})
    sweep.update({f"promotion.{k}": getattr(s.promotion, k) for k in DEFINING_PROMOTION_KEYS})
    if not sweep.get("baselines", True):
        sweep.pop("fno_budget_s", None)  # no baseline rows: their budget decides nothing
        sweep.pop("fno_steps", None)
    return _jsonable(sweep)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` as it reads back from the JSON record (tuples → lists, other objects → str)."""
    return json.loads(json.dumps(d, default=str))


def experiment_file(storage: str, fs: Any, name: str, filename: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path) of ``filename`` in sweep ``name``'s experiment folder: local folder or S3
    alike, as ``ups.tune.tune_state`` reads Tune's own state (the record here, the driver lease)."""
    from ray.train._internal.storage import get_fs_and_path

    return get_fs_and_path(f"{storage.rstrip('/')}/{name}/{filename}", storage_filesystem=fs)


@contextlib.contextmanager
def provisional_folder(storage: str, fs: Any, name: str, record: dict[str, Any], new: bool,
                       lease: Any = None) -> Iterator[None]:
    """A new sweep's (``new``) folder and record, written before its data and baselines, so ``resume=true`` without
    ``name=`` after a driver stopped there finds this sweep.  An exception before Tune built the sweep (a refused
    data file, a failed baseline) removes the folder again if this call made it: a refused command is no sweep to
    resume.  An interrupt (Ctrl-C, a signal: not an ``Exception``) keeps it.  ``lease`` (a
    ``ups.tune.driver_lease.DriverLease``, new sweep or resume) is taken before anything is written, so a driver
    refused by another one's lease writes and removes nothing; it is released before the folder is removed."""
    fs_, path = _record_file(storage, fs, name)
    folder = posixpath.dirname(path)
    import pyarrow.fs as pafs

    made = new and fs_.get_file_info(folder).type == pafs.FileType.NotFound
    if lease is not None:
        lease.acquire()  # refused: nothing of this driver's is written, nothing of the other's removed
    try:
        if new:
            write_record(storage, fs, name, record)
        yield
    except Exception:
        from ray import tune

        if lease is not None:
            lease.release()
        if made and not tune.Tuner.can_restore(f"{storage.rstrip('/')}/{name}", storage_filesystem=fs):
            with contextlib.suppress(OSError):
                fs_.delete_dir(folder)
        raise


def _record_file(storage: str, fs: Any, name: str) -> tuple[Any, str]:
    return experiment_file(storage, fs, name, RECORD)


def write_record(storage: str, fs: Any, name: str, record: dict[str, Any]) -> None:
    """Save the record, and a copy of its space file (``SPACE_COPY``), in the experiment folder."""
    fs, path = _record_file(storage, fs, name)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    space = Path(str(record.get("space_file", "")))
    text = space.read_bytes() if space.is_file() else None  # read first: a resume may run from the copy itself
    with fs.open_output_stream(path) as out:
        out.write(json.dumps(record, indent=1, sort_keys=True).encode())
    if text is not None and hashlib.sha1(text).hexdigest() == record.get("space_sha1"):
        with fs.open_output_stream(posixpath.join(posixpath.dirname(path), SPACE_COPY)) as out:
            out.write(text)


def _space_copy(storage: str, fs: Any, name: str, display: str, saved: dict[str, Any]) -> str | None:
    """Where the space file the sweep started with is kept (a ``space=`` value for a local storage_path; an
    ``s3://`` URI to download otherwise), or None (a sweep recorded before copies were kept, or a copy that
    is not the recorded content)."""
    import pyarrow.fs as pafs

    fs, path = _record_file(storage, fs, name)
    copy = posixpath.join(posixpath.dirname(path), SPACE_COPY)
    try:
        if fs.get_file_info(copy).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(copy) as f:
            if hashlib.sha1(f.read()).hexdigest() != saved.get("space_sha1"):
                return None
    except OSError:
        return None
    return f"{display.rstrip('/')}/{name}/{SPACE_COPY}"


def experiment_dirs(storage: str, fs: Any, round_name: str) -> list[str]:
    """The names of the sweep folders (``<round>-…``) of ``round_name`` under ``storage`` (local, or ``fs``: a
    pyarrow filesystem for S3), sorted; [] when there is none."""
    if fs is None:
        root = Path(storage)
        return sorted(p.name for p in root.glob(f"{round_name}-*") if p.is_dir()) if root.exists() else []
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(storage, allow_not_found=True))
    return sorted(Path(i.path).name for i in infos if i.type == pafs.FileType.Directory
                  and Path(i.path).name.startswith(f"{round_name}-"))


def _stamp_order(name: str, round_name: str) -> tuple[str, int] | None:
    """(timestamp, n) of a sweep named ``<round>-YYYYmmdd-HHMMSS`` (n = 1) or ``…-HHMMSS-<n>``; None otherwise."""
    m = re.fullmatch(rf"{re.escape(round_name)}-(\d{{8}}-\d{{6}})(?:-(\d+))?", name)
    return (m.group(1), int(m.group(2) or 1)) if m else None


def latest_sweep(names: Sequence[str], round_name: str) -> str:
    """The sweep ``resume=true`` continues without ``name=``: the newest ``<round>-YYYYmmdd-HHMMSS[-n]`` folder
    (a hand-named ``round_a-final`` sorts after every timestamp but is resumed only by ``name=``)."""
    stamped = [(order, n) for n in names if (order := _stamp_order(n, round_name)) is not None]
    return max(stamped)[1] if stamped else sorted(names)[-1]


# names claimed by drivers on this machine: two sweeps of a round started in the same second (two terminals, a
# shell loop with &, two `ray submit` to one head) both named themselves <round>-<that second>, and the second
# was refused as "still running" once its data had loaded (on a shared trial scratch folder, too)
def claims_dir() -> Path:
    """Where this machine's drivers claim sweep names: ``$TMPDIR/ups-sweep-names`` (read when a name is claimed)."""
    return Path(tempfile.gettempdir()) / "ups-sweep-names"


CLAIM_TTL_S = 3600.0  # a name holds a second of the clock: an hour-old claim can only block a clock set back


def _claim_here(storage: str, name: str) -> bool:
    """Claim ``name`` under ``storage`` for this driver, once per machine (an exclusive create); False when a
    driver here claimed it first. Where the claims folder cannot be written, every name is free here."""
    claims = claims_dir()
    try:
        claims.mkdir(mode=0o1777, exist_ok=True)
        now = time.time()
        for old in claims.iterdir():
            try:
                if now - old.stat().st_mtime > CLAIM_TTL_S:
                    old.unlink()
            except OSError:  # another driver removed it first
                continue
        key = hashlib.sha1(f"{storage.rstrip('/')}/{name}".encode()).hexdigest()[:20]
        os.close(os.open(claims / key, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    except OSError:
        return True
    return True


def new_sweep_name(round_name: str, storage: str, fs: Any, now: datetime | None = None) -> str:
    """A new sweep's folder name: ``<round>-YYYYmmdd-HHMMSS`` (UTC), ``…-2``, ``…-3`` when that name is taken on
    ``storage`` or by another driver started on this machine in the same second."""
    base = f"{round_name}-{(now or datetime.now(timezone.utc)):%Y%m%d-%H%M%S}"
    on_storage = set(experiment_dirs(storage, fs, round_name))
    for n in itertools.count(1):
        name = base if n == 1 else f"{base}-{n}"
        if name not in on_storage and _claim_here(storage, name):
            return name
    raise AssertionError("unreachable")


def read_record(storage: str, fs: Any, name: str) -> dict[str, Any] | None:
    """The saved record, or None for a sweep started before records existed."""
    import pyarrow.fs as pafs

    fs, path = _record_file(storage, fs, name)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    try:
        with fs.open_input_stream(path) as f:
            record = json.loads(f.read().decode())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        return record
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"resume=true: '{path}' (what the sweep was started with) is unreadable ({e}). Fix: restore "
                          f"it, or delete it to resume without checking this command against the original") from None


def schema_defaults() -> dict[str, dict[str, Any]]:
    """The record's sections as the code's own defaults would fill them (``sweep``, ``trial``)."""
    from omegaconf import OmegaConf

    from ups.config import UPSConfig
    from ups.tune.sweep_config import SweepConfig

    return {"sweep": _sweep_section(SweepConfig()),
            "trial": _jsonable(flatten(to_dict(OmegaConf.structured(UPSConfig))))}


def check_data_version(saved: dict[str, Any], display: str, name: str) -> None:
    """Refuse, before any data is made, a resume of a sweep whose record names another data generator version
    (``ups.data.cache.DATA_VERSION``): the same ``data.*`` settings now give other data (a data file given as
    ``data.path`` is read as it is). Records from before 2026-12-07 keep no version: ``check_resume_data`` finds
    the change once the data is made."""
    code = saved.get("code") or {}
    if not other_data_version(code, saved.get("trial") or {}):
        return
    now = code_version()["data_version"]
    raise ConfigError(f"resume=true: {display}/{name} was started by {describe(code)} ({display}/{name}/"
                      f"{RECORD}); this code generates data version {now} (ups.data.cache.DATA_VERSION), so the same "
                      f"data.* settings give other data and its trials would mix data sets. Fix: resume with the "
                      f"code it started with ({checkout_fix(code, name)}, then the same command), or start a new sweep of "
                      f"the round (without resume=true)")


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'key: saved → now' for every defining setting that differs.  A key the saved record lacks is a
    setting added to the code after the sweep started: at its default it is what that sweep ran with
    (new settings default to the old behaviour), so it is no difference."""
    out = []
    if saved.get("space_sha1") != now.get("space_sha1"):
        out.append(f"search space {saved.get('space_file')} → {now.get('space_file')} (its content differs)")
    defaults = schema_defaults()
    for section in ("sweep", "trial"):
        a, b = saved.get(section, {}), now.get(section, {})
        for key in sorted(set(a) | set(b)):
            if key not in a and (key in RECORDED_LATER or key in defaults[section]
                                 and b.get(key) == defaults[section][key]):
                continue
            if a.get(key) != b.get(key):
                out.append(f"{key}: {a.get(key, '(unset)')!r} → {b.get(key, '(unset)')!r}")
    return out


def resume_pins(saved: dict[str, Any], now: dict[str, Any], args: Sequence[str]) -> list[str]:
    """``key=value`` for each setting the sweep ran with that ``now`` sets otherwise and its saved command
    (``args``) did not set: a value its profile or round DEFAULTS gave then and give no more (the smoke profile's
    ``eval.max_samples`` 8 → -1), which the started command alone no longer reproduces.  Trial and sweep settings
    alike: both sections are ``key=value`` on a sweep script's command line."""
    typed = {override_key(o) for o in args if "=" in o}

    def text(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))

    pins = []
    defaults = schema_defaults()
    for section in ("sweep", "trial"):
        a, b = saved.get(section, {}), now.get(section, {})
        pins += [f"{k}={text(a[k])}" for k in sorted(a) if k in b and a[k] != b[k] and k not in typed]
        # a setting added after the sweep started ran at its schema default (fno_steps: 0), which a profile may
        # no longer give (the smoke profile's 120): pinned there, or the fix was refused again
        pins += [f"{k}={text(defaults[section][k])}" for k in sorted(b) if k not in a and k not in RECORDED_LATER
                 and k in defaults[section] and b[k] != defaults[section][k] and k not in typed]
    return pins


def check_resume(storage: str, fs: Any, name: str, display: str, now: dict[str, Any]) -> None:
    """Refuse a resume whose command would continue sweep ``name`` under other settings."""
    saved = read_record(storage, fs, name)
    if saved is None:
        return
    started_as = saved.get("name")  # absent in records written before it was kept
    if started_as and started_as != name:  # its trials are on the leaderboard as <started_as>-<trial_id> already
        raise ConfigError(f"resume=true: {display}/{name} was started as sweep {started_as} ({display}/{name}/{RECORD} "
                          f"says so): a copied or renamed sweep folder, resumed under another name, would put its "
                          f"trials on the leaderboard a second time ({name}-<trial> next to {started_as}-<trial>). "
                          f"Fix: resume it under its own name: move it back to {display}/{started_as} and run with "
                          f"name={started_as} resume=true, or keep the copy in another folder as {started_as} and add "
                          f"storage_path=<that folder> name={started_as} resume=true")
    check_data_version(saved, display, name)
    diff = differences(saved, now)
    if not diff:
        return
    shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
    args = list(saved.get("overrides", []))
    args += resume_pins(saved, now, args)
    named = [] if any(a.startswith("name=") for a in args) else [f"name={name}"]
    copy = _space_copy(storage, fs, name, display, saved) if saved.get("space_sha1") != now.get("space_sha1") else None
    local = copy is not None and "://" not in copy
    space = [f"space={copy}"] if local else []
    command = shlex.join(["python", f"sweeps/{saved.get('round', '?')}.py", *args, *named, *space, "resume=true"])
    note = (f" ({'space=… is' if local else f'download {copy} and add space=<that file>: it is'} the space file as the "
            "sweep started with it, kept next to the record)") if copy else ""
    code = saved.get("code")
    other = "" if code and code.get("commit") == code_version()["commit"] else \
        f". It was started by {describe(code)}: where that command is refused too, {checkout_fix(code, name)}"
    raise ConfigError(f"resume=true: this command would continue {display}/{name} under other settings than it was "
                      f"started with ({shown}); its trials would mix budgets or data. Fix: resume with the command "
                      f"that started it (saved in {display}/{name}/{RECORD}): {command}{note}{other}")
