"""What a sweep was started with, saved next to its Tune state, so that ``resume=true`` can refuse a command
that would continue it under other settings.

``Tuner.restore`` continues the saved trials with the trainable of the *resuming* command: a resume
without the original ``profile=full`` (or with another ``stages.operator.epochs``, space or searcher) would
train the rest of the sweep on other data or budgets, and mix them on one leaderboard.  At launch the
sweep writes ``ups_sweep.json`` (its command line, the trial base config, the space file's hash and the
settings that define which trials run); a resume compares and, on a difference, fails before Ray starts
with the keys that differ and the original command.  Operational settings may change on a resume
(resources, concurrency, W&B, reports, Ray address, data cache folder, device, threads).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from ups.config import ConfigError, flatten, to_dict

RECORD = "ups_sweep.json"
# trial config keys a resume may change: where and how the same trials run, not which
OPERATIONAL_KEYS = ("data.cache_dir", "training.device", "training.num_threads")
# sweep settings that decide which trials run and how they are cut
DEFINING_SWEEP_KEYS = ("num_samples", "time_budget_s", "compute_budget_s", "scheduler", "searcher", "gates",
                       "stage_cache")


def sweep_record(p: Any, overrides: Sequence[str]) -> dict[str, Any]:
    """The record of a prepared sweep (``ups.tune.launcher.Prepared``) and the command's ``overrides``."""
    s = p.scfg
    base = {k: v for k, v in flatten(to_dict(p.base)).items() if not k.startswith(OPERATIONAL_KEYS)}
    sweep = flatten({k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                     for k, v in ((k, getattr(s, k)) for k in DEFINING_SWEEP_KEYS)})
    space_text = Path(p.space.path).read_bytes() if getattr(p.space, "path", None) else b""
    return {"round": s.round, "overrides": [o for o in overrides if not o.startswith("resume=")],
            "space_file": str(getattr(p.space, "path", "")), "space_sha1": hashlib.sha1(space_text).hexdigest(),
            "sweep": json.loads(json.dumps(sweep, default=str)), "trial": json.loads(json.dumps(base, default=str))}


def _join(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}/{RECORD}"


def write_record(storage: str, fs: Any, name: str, record: dict[str, Any]) -> None:
    """Save the record in the experiment folder (local folder or the pyarrow filesystem of S3)."""
    text = json.dumps(record, indent=1, sort_keys=True).encode()
    path = _join(storage, name)
    if fs is None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(text)
        return
    with fs.open_output_stream(path) as out:
        out.write(text)


def read_record(storage: str, fs: Any, name: str) -> dict[str, Any] | None:
    """The saved record, or None for a sweep started before records existed."""
    path = _join(storage, name)
    try:
        if fs is None:
            text = Path(path).read_text()
        else:
            with fs.open_input_stream(path) as f:
                text = f.read().decode()
        record = json.loads(text)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        return record
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"resume=true: '{path}' (what the sweep was started with) is unreadable ({e}). Fix: restore "
                          f"it, or delete it to resume without checking this command against the original") from None
    except FileNotFoundError:
        return None
    except OSError as e:  # pyarrow reports a missing S3 key as OSError with "not found"/"does not exist"
        if "not found" in str(e).lower() or "does not exist" in str(e).lower():
            return None
        raise


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'key: saved → now' for every defining setting that differs."""
    out = []
    if saved.get("space_sha1") != now.get("space_sha1"):
        out.append(f"search space {saved.get('space_file')} → {now.get('space_file')} (its content differs)")
    for section in ("sweep", "trial"):
        a, b = saved.get(section, {}), now.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{key}: {a.get(key, '(unset)')!r} → {b.get(key, '(unset)')!r}")
    return out


def check_resume(storage: str, fs: Any, name: str, display: str, now: dict[str, Any]) -> None:
    """Refuse a resume whose command would continue sweep ``name`` under other settings."""
    saved = read_record(storage, fs, name)
    if saved is None:
        return
    diff = differences(saved, now)
    if not diff:
        return
    shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
    args = saved.get("overrides", [])
    named = [] if any(a.startswith("name=") for a in args) else [f"name={name}"]
    command = " ".join(["python", f"sweeps/{saved.get('round', '?')}.py", *args, *named, "resume=true"])
    raise ConfigError(f"resume=true: this command would continue {display}/{name} under other settings than it was "
                      f"started with ({shown}); its trials would mix budgets or data. Fix: resume with the command "
                      f"that started it (saved in {display}/{name}/{RECORD}): {command}")
