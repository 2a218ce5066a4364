"""Inputs of the reports: CLI key=value arguments, the leaderboard and the champion (no Ray).

Every bad input raises ``ReportError`` naming the file, the key and the fix before any work starts.
``ReportError`` subclasses ``ConfigError`` so ``ups/cli.py`` prints it and exits with code 2.
"""
from __future__ import annotations

import difflib
import json
import math
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from ups.config import ConfigError, is_local_path
from ups.leaderboard import LEADERBOARD_COLUMNS, leaderboard_problem, read_leaderboard, selection_key

DEFAULT_LEADERBOARD = Path("reports/leaderboard.csv")
DEFAULT_CHAMPION = Path("reports/champion.json")


class ReportError(ConfigError):
    """Bad report/export input; the message names the file or key and the fix."""


# ------------------------------------------------------------------------------------ arguments
def parse_kv(argv: Sequence[str], allowed: dict[str, str], command: str,
             remote_ok: frozenset[str] = frozenset()) -> dict[str, str]:
    """Parse ``key=value`` tokens; unknown keys and bare words fail naming the valid keys.  ``remote_ok``: keys of
    ``LOCAL_ONLY`` this command reads from an ``s3://`` URI itself."""
    out: dict[str, str] = {}
    valid = ", ".join(f"{k}=<{v}>" for k, v in allowed.items())
    for tok in argv:
        if "=" not in tok:
            raise ReportError(f"{command}: cannot parse argument '{tok}'. Use key=value with keys: {valid}")
        key, value = tok.split("=", 1)
        key = key.strip().lstrip("-").replace("-", "_")
        if key not in allowed:
            near = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.5)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise ReportError(f"{command}: unknown argument '{key}'.{hint} Valid: {valid}")
        if not value:
            raise ReportError(f"{command}: argument '{key}' is empty. Fix: {key}=<{allowed[key]}>")
        if key in LOCAL_ONLY - remote_ok and not is_local_path(value):
            raise ReportError(f"{command}: {key}={value} — reports read and write local files (experiment= and "
                              f"checkpoint= may be s3://). Fix: copy it locally (aws s3 cp/sync) and pass the local path; a "
                              f"sweep with storage_path=s3://… publishes its leaderboard and report there itself")
        out[key] = value
    return out


LOCAL_ONLY = frozenset({"leaderboard", "out", "report_dir", "champion"})


# ---------------------------------------------------------------------------------- leaderboard
def load_leaderboard(path: str | Path) -> pd.DataFrame:
    """Read and validate a leaderboard CSV (``ups.leaderboard`` columns); numeric columns coerced."""
    path = Path(path)
    if not path.exists():
        raise ReportError(
            f"leaderboard '{path}' does not exist. Fix: run a sweep first (python sweeps/round_a.py) "
            f"or pass leaderboard=<path to leaderboard.csv>")
    if path.is_dir():
        raise ReportError(f"leaderboard '{path}' is a directory. Fix: pass the CSV file, e.g. {path / 'leaderboard.csv'}")
    problem = leaderboard_problem(path)
    if problem:
        raise ReportError(f"leaderboard '{path}' {problem}. Fix: pass the leaderboard.csv a sweep wrote (columns "
                          f"{', '.join(LEADERBOARD_COLUMNS[:6])}, …), or repair this one")
    return normalise_leaderboard(read_leaderboard(path))


NUMERIC = ["nrmse", "nrmse_ttc", "nrmse_pdebench", "conservation_gap", "energy_violation", "bc_violation",
           "ece", "rollout_horizon", "wall_clock", "gpu_hours", "est_cost", "params"]


def normalise_leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in LEADERBOARD_COLUMNS:
        if c not in df.columns:
            df[c] = None
    for c in NUMERIC:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["kind"] = df["kind"].fillna("trial").astype(str)
    df["status"] = df["status"].fillna("").astype(str)
    df["round"] = df["round"].fillna("").astype(str)
    df["gate_pass"] = df["gate_pass"].map(to_bool)
    return df


def to_bool(v: Any) -> bool | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) or type(v).__module__ == "numpy":
        return bool(float(v))  # a bool column read back from CSV as 0.0/1.0
    s = str(v).strip().lower()
    if s in ("true", "1", "yes", "pass", "passed"):
        return True
    if s in ("false", "0", "no", "fail", "failed"):
        return False
    return None


FAILED_STATUSES = {"ERROR", "FAILED", "CRASHED", "ERRORED"}
STOPPED_STATUSES = {"STOPPED", "EARLY_STOPPED", "ASHA_STOPPED", "TERMINATED", "PAUSED"}


def trial_state(row: pd.Series | dict) -> str:
    """baseline | failed (errored, or finished without a metric) | stopped (early stop, no final eval) |
    running | ok."""
    if str(row.get("kind", "trial")) == "baseline":
        return "baseline"
    status = str(row.get("status", "") or "").upper()
    if status in FAILED_STATUSES:
        return "failed"
    if status in ("RUNNING", "PENDING", "INTERRUPTED"):  # interrupted: unfinished, resume=true continues it
        return "running"
    nrmse = row.get("nrmse")
    if nrmse is None or pd.isna(nrmse):
        return "stopped" if status in STOPPED_STATUSES else "failed"
    return "ok"


def is_failed(row: pd.Series | dict) -> bool:
    """A trial row that errored, or completed without reporting a metric."""
    return trial_state(row) == "failed"


def select_round(df: pd.DataFrame, round_name: str | None) -> pd.DataFrame:
    """Trials of one round (all rounds for None/'all') plus the baseline rows of the same data: when the
    trials record a ``data_hash``, baselines of other data (another profile sharing the leaderboard) are
    left out, so the report never draws two unlabelled "fno" lines; older rows without one keep them all."""
    base = df[df["kind"] == "baseline"]
    trials = df[df["kind"] != "baseline"]
    if round_name and round_name != "all":
        trials = trials[trials["round"] == round_name]
    if "data_hash" in df.columns:
        hashes = {str(h)[:12] for h in trials["data_hash"].dropna() if str(h).strip()}
        if hashes:
            base = base[base["data_hash"].fillna("").astype(str).str[:12].isin(hashes)]
    return pd.concat([trials, base], ignore_index=True)


def cell_text(v: Any) -> str:
    """A leaderboard cell as text: "" for a blank one (None, or NaN after a CSV read, which ``or`` takes for a value)."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def baselines_on(lb: pd.DataFrame, data_hash: Any) -> dict[str, float]:
    """{persistence/linear/fno: nRMSE} of the baseline rows scored on ``data_hash``'s test data (its first 12
    characters, as baseline rows carry it); every baseline row when the hash is blank (older leaderboards)."""
    from ups.reports.plots import _baseline_name

    base = lb[(lb["kind"] == "baseline") & pd.to_numeric(lb["nrmse"], errors="coerce").notna()]
    want = cell_text(data_hash)[:12]
    if want and "data_hash" in base:
        base = base[base["data_hash"].fillna("").astype(str).str[:12] == want]
    return {_baseline_name(b): float(b["nrmse"]) for _, b in base.iterrows()}


def one_data_set(lb: pd.DataFrame, experiment: str | Path | None = None,
                 data_hash: str | None = None) -> tuple[pd.DataFrame, str | None, str | None]:
    """(rows, data hash, note): a round's rows restricted to the trials and baselines of one test data set, when its
    trials span several (the smoke and full profiles, or a data.* override, sharing one leaderboard: their scores
    do not compare, and the report picked its best trial across them).  Which one: ``data_hash`` (a prefix),
    else the data of ``experiment``'s trials, else that of the newest trial.  Rows without a hash (older
    leaderboards) are kept when the trials span at most one data set."""
    if "data_hash" not in lb.columns:
        return lb, None, None
    h12 = lb["data_hash"].fillna("").astype(str).str[:12]
    trial = lb["kind"] != "baseline"
    hashes = sorted(set(h12[trial]) - {""})
    if data_hash:
        want = str(data_hash)[:12]
        if not any(h.startswith(want) or want.startswith(h) for h in hashes):
            raise ReportError(f"data_hash={data_hash}: no trial of this round was scored on it. Fix: one of "
                              f"{', '.join(hashes) or 'none (these rows record no data_hash)'}")
        chosen, why = next(h for h in hashes if h.startswith(want) or want.startswith(h)), "data_hash="
    elif len(hashes) <= 1:
        return lb, (hashes[0] if hashes else None), None
    else:
        name = Path(str(experiment).rstrip("/")).name if experiment else ""
        own = h12[trial & (lb["experiment"].astype(str) == name) & (h12 != "")] if name else h12.iloc[0:0]
        if len(own):
            chosen, why = own.iloc[-1], f"the data of {name}"
        else:
            newest = lb[trial & (h12 != "")].sort_values("timestamp", kind="stable")
            chosen, why = str(newest["data_hash"].iloc[-1])[:12], "the newest trial's data"
    keep = h12 == chosen
    n_other = int((trial & ~keep).sum())
    note = None
    if n_other:
        note = (f"this round's trials on the leaderboard were scored on {len(hashes)} test data sets (data_hash "
                f"{', '.join(hashes)}), whose nRMSE do not compare: shown are the {int((trial & keep).sum())} on "
                f"{chosen} ({why}) and that data's baselines; {n_other} other trial(s) are left out. Fix: ups report "
                f"data_hash=<one of those> out=<another folder> for another data set's report")
    return lb[keep].reset_index(drop=True), chosen, note


def rounds_in(df: pd.DataFrame) -> list[str]:
    t = df[(df["kind"] != "baseline") & (df["round"] != "")]
    if t.empty:
        return []
    order = t.groupby("round")["timestamp"].max().sort_values(kind="stable")
    return list(order.index)


SEED_RETRAINS = "seeds-"  # promotion.seeds retrains a sweep's promoted configs in the experiment seeds-<sweep>


def newest_sweep(lb: pd.DataFrame) -> str | None:
    """The experiment name of the newest trial row: the sweep a user just ran (its seed retrains, which end after it,
    stand for it), or None when no trial names one."""
    if "experiment" not in lb or "kind" not in lb:
        return None
    t = lb[(lb["kind"] == "trial") & (lb["experiment"].fillna("").astype(str) != "")]
    if t.empty:
        return None
    names = set(t["experiment"].astype(str))
    newest = str(t.sort_values("timestamp", kind="stable")["experiment"].iloc[-1])
    parent = newest.removeprefix(SEED_RETRAINS)
    return parent if newest.startswith(SEED_RETRAINS) and parent in names else newest


def recorded_experiment_folders(lb: pd.DataFrame, name: str) -> list[str]:
    """The folders ``name``'s trials' checkpoint paths on the leaderboard place the experiment in, in order seen
    (whether or not they exist now)."""
    rows = lb[lb["experiment"].astype(str) == name] if "experiment" in lb else lb.iloc[:0]
    parts = [ck.partition(f"/{name}/") for ck in
             (rows["checkpoint"].dropna().astype(str) if "checkpoint" in rows else [])]
    return list(dict.fromkeys(f"{head}/{name}" for head, sep, _ in parts if sep and head))  # a path not under it: none


def experiment_folder(lb: pd.DataFrame, name: str, storage: str | Path = "runs/sweeps") -> str:
    """Where the experiment a leaderboard names lives: the value itself when it is a path or URI; else the folder
    of that name above its trials' checkpoints (absolute paths under the sweep's storage_path, right wherever
    the report runs and whatever storage_path the sweep had; S3 ones included); else ``storage/name``."""
    if "://" in name or "/" in name:
        return name
    for folder in recorded_experiment_folders(lb, name):
        if "://" in folder or Path(folder).is_dir():
            return folder
    if "://" in str(storage):
        return f"{str(storage).rstrip('/')}/{name}"
    return str((Path(storage) / name).resolve())  # absolute: Ray's ExperimentAnalysis refuses a relative path


def best_trial(df: pd.DataFrame) -> pd.Series | None:
    """The best finished trial (kind=trial, with a test nRMSE; gate-passing ones first); None if there is none.
    Chosen on validation, as the sweep's promotion chooses (``ups.tune.promotion.selection_order``): the lowest
    ``val_nrmse_ttc`` (the final val rollout with TTC) when every candidate has one, else the lowest ``val_nrmse``
    when every candidate has one, so the test nRMSE reported for it is not picked on the test split itself; else
    the lowest test ``nrmse`` (rows without a validation figure, e.g. written by other tools)."""
    t = df[(df["kind"] == "trial") & df["nrmse"].notna()]
    if t.empty:
        return None
    passing = t[t["gate_pass"] == True]  # noqa: E712  (object column)
    pool = passing if not passing.empty else t
    order = pd.to_numeric(pool[selection_key(pool.to_dict("records"))], errors="coerce")
    return pool.iloc[int(order.reset_index(drop=True).sort_values(kind="stable").index[0])]


def row_config(row: pd.Series | dict) -> dict[str, Any]:
    raw = row.get("config_json")
    if raw is None or (isinstance(raw, float) and math.isnan(raw)) or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        cfg = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


# ------------------------------------------------------------------------------------ champion
def load_champion(path: str | Path) -> dict[str, Any]:
    """Read ``champion.json``: a JSON object with at least ``checkpoint`` (path to checkpoint.pt).  ``path`` may be
    an ``s3://…/champion.json`` (an S3 sweep publishes its record next to its leaderboard)."""
    if str(path).startswith("s3://"):
        text = _read_s3_text(str(path))
    else:
        path = Path(path)
        if not path.exists():
            raise ReportError(
                f"no champion: '{path}' does not exist. Fix: finish a sweep round that promotes a champion "
                f"(it writes {DEFAULT_CHAMPION}), or pass checkpoint=<path/to/checkpoint.pt> (or champion=<file>)")
        if path.is_dir():
            raise ReportError(f"champion file '{path}' is a folder. Fix: pass the record itself, e.g. "
                              f"champion={path / 'champion.json'}")
        text = path.read_text()
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ReportError(f"champion file '{path}' is not valid JSON ({e}). Fix: re-run the promotion or "
                          f"pass checkpoint=<path/to/checkpoint.pt>") from None
    if not isinstance(data, dict):
        raise ReportError(f"champion file '{path}' must hold a JSON object, got {type(data).__name__}. "
                          f"Fix: re-run the promotion or pass checkpoint=<path>")
    if not data.get("checkpoint"):
        raise ReportError(f"champion file '{path}' has no 'checkpoint' key. Fix: re-run the promotion "
                          f"(keys present: {', '.join(sorted(data)) or 'none'}) or pass checkpoint=<path>")
    from ups.leaderboard import EVAL_COLUMNS

    for key in ("score", *EVAL_COLUMNS):  # a hand edit went into the model card and report as text
        v = data.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ReportError(f"champion file '{path}': '{key}' is {v!r}, not a number. Fix: put back the figure "
                              f"the promotion wrote (its history: {Path(path).stem}_history.jsonl beside it), or null")
    return data


def champion_argument(value: str, leaderboard: Path, stands_in: str) -> Path:
    """A report command's ``champion=`` (a local record), refused at once when it does not exist, before any
    rendering or kernel; the fix names what the command uses without it: the champion.json beside ``leaderboard``,
    or ``stands_in``."""
    path = Path(value)
    if not path.exists():
        raise ReportError(f"champion file '{value}' does not exist. Fix: drop champion= to use "
                          f"{Path(leaderboard).parent / 'champion.json'} or {stands_in}")
    return path


def champion_checkpoint(record: str | Path) -> tuple[dict[str, Any], str, Path | None]:
    """A champion record, a local file or an ``s3://`` URI (which Path would fold to s3:/) → (the record, its
    checkpoint as recorded, the folder a relative checkpoint is also looked for from: the one above the record's,
    i.e. the checkout for reports/champion.json; None for a record on S3)."""
    if str(record).startswith("s3://"):
        rec = load_champion(str(record))
        return rec, str(rec["checkpoint"]), None
    path = Path(record).expanduser()
    rec = load_champion(path)
    return rec, str(rec["checkpoint"]), path.parent.parent


CHECKPOINT_FIX = "pass checkpoint=<path/to/checkpoint.pt> of a finished trial"


def resolve_checkpoint(checkpoint: str | Path, base: Path | None = None, fix: str = CHECKPOINT_FIX) -> Path:
    """A checkpoint path (file or the directory holding checkpoint.pt), relative paths tried from base;
    an ``s3://bucket/…/checkpoint_N`` (what champion.json records for a sweep on S3) is downloaded first."""
    if str(checkpoint).startswith("s3://"):
        return fetch_s3_checkpoint(str(checkpoint))
    p = Path(str(checkpoint)).expanduser()
    candidates = [p] if p.is_absolute() or base is None else [p, base / p]
    for c in candidates:
        if c.is_dir() and (c / "checkpoint.pt").exists():
            return c / "checkpoint.pt"
        if c.is_file():
            return c
    raise ReportError(f"checkpoint '{checkpoint}' does not exist (looked for the file and <dir>/checkpoint.pt). "
                      f"Fix: {fix}")


def checkpoint_name(checkpoint: str | Path) -> str:
    """A checkpoint's short name: its ``checkpoint_N`` folder for ``…/checkpoint_N/checkpoint.pt``, else the
    last part (``s3://…/checkpoint_N``: a string split, as ``Path`` would fold ``s3://`` to ``s3:/``)."""
    parts = str(checkpoint).rstrip("/").split("/")
    return parts[-2] if parts[-1].endswith(".pt") and len(parts) > 1 else parts[-1]


@contextmanager
def checkpoint_file(checkpoint: str | Path, base: Path | None = None, fix: str = CHECKPOINT_FIX) -> Iterator[Path]:
    """``resolve_checkpoint`` for the length of a ``with`` block: an S3 download (a temp folder of one
    checkpoint, 0.1 MB to GBs) is deleted when the block ends, errors included; a local file is left alone."""
    path = resolve_checkpoint(checkpoint, base, fix)
    try:
        yield path
    finally:
        if str(checkpoint).startswith("s3://"):
            shutil.rmtree(path.parent, ignore_errors=True)


def _read_s3_text(uri: str) -> str:
    """A small text object on S3 (a champion record); endpoint and credentials as for ``storage_path``."""
    from pyarrow import fs as pafs

    from ups.cloud.storage import StorageError, resolve_storage

    path, filesystem = resolve_storage(uri)
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        raise StorageError(f"no champion: '{uri}' does not exist on S3. Fix: pass the champion record an S3 sweep "
                           f"published (s3://<bucket>/<storage prefix>/<experiment>/champion.json, or the name its "
                           f"champion= had, e.g. champion_full.json), or a local champion=<file>")
    with filesystem.open_input_stream(path) as f:
        return f.readall().decode(errors="replace")


def fetch_s3_checkpoint(uri: str) -> Path:
    """Download ``s3://…/checkpoint_N`` (a Tune checkpoint folder, or one ``….pt`` file) to a temp folder;
    the local ``checkpoint.pt``.  Endpoint and credentials as for ``storage_path`` (``ups.cloud.storage``)."""
    import tempfile

    from pyarrow import fs as pafs

    from ups.cloud.storage import StorageError, resolve_storage

    path, filesystem = resolve_storage(uri)
    info = filesystem.get_file_info(path)
    if info.type not in (pafs.FileType.File, pafs.FileType.Directory):
        raise StorageError(f"checkpoint '{uri}' does not exist on S3. Fix: pass checkpoint=<s3 URI or local path> "
                           f"of a finished trial (the leaderboard's checkpoint column)")
    local = Path(tempfile.mkdtemp(prefix="ups_ckpt_"))
    try:  # a failed or empty download leaves no temp folder behind (the caller deletes a good one)
        if info.type == pafs.FileType.File:
            pafs.copy_files(path, str(local / "checkpoint.pt"), source_filesystem=filesystem)
        else:
            pafs.copy_files(path, str(local), source_filesystem=filesystem)
        if not (local / "checkpoint.pt").is_file():
            raise ReportError(f"checkpoint '{uri}' holds no checkpoint.pt. Fix: pass a trial's checkpoint_N folder")
    except BaseException:
        shutil.rmtree(local, ignore_errors=True)
        raise
    return local / "checkpoint.pt"
