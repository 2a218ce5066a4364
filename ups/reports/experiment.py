"""Read a Ray Tune experiment folder as plain files, without importing Ray.

Layout written by Ray Tune 2.60 (``RunConfig(storage_path, name)``)::

    <experiment>/experiment_state-<date>.json   trial_data: [[trial JSON, runtime JSON], …]
    <experiment>/<trial dir>/result.json         one JSON object per reported result
    <experiment>/<trial dir>/progress.csv        the same as CSV (fallback)
    <experiment>/<trial dir>/params.json         the trial's sampled config
    <experiment>/<trial dir>/error.txt           traceback of an errored trial

The newest ``experiment_state-*.json`` gives each trial's status (TERMINATED, ERROR, …) and folder;
without it the trial folders are scanned (status ERROR when ``error.txt`` exists). Local paths and
``s3://`` URIs (through ``pyarrow.fs``, honouring ``AWS_ENDPOINT_URL``) are supported. The analysis
notebook uses Ray's own ``ExperimentAnalysis`` instead; this reader exists so ``ups/`` stays Ray-free.
"""
from __future__ import annotations

import io
import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ups.reports.sources import ReportError


@dataclass
class TrialRecord:
    trial_id: str
    status: str  # TERMINATED | ERROR | RUNNING | PENDING | PAUSED | UNKNOWN
    config: dict[str, Any]
    history: pd.DataFrame  # one row per reported result (training_iteration, val_nrmse, …)
    error: str | None = None  # last line of error.txt for errored trials
    dirname: str = ""


@dataclass
class ExperimentResults:
    path: str
    trials: list[TrialRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sweep: dict[str, Any] = field(default_factory=dict)  # the sweep's recorded settings (``sweep_settings``)

    @property
    def scheduler(self) -> str:
        """``scheduler.name`` the sweep ran with (asha, fifo, pbt); "" when the folder has no sweep record."""
        return str(self.sweep.get("scheduler.name") or "")

    def histories(self) -> pd.DataFrame:
        """All reported results, one row per (trial, iteration), with ``trial_id`` and ``status``."""
        frames = []
        for t in self.trials:
            if t.history.empty:
                continue
            h = t.history.copy()
            h["trial_id"] = t.trial_id
            h["status"] = t.status
            frames.append(h)
        if not frames:
            return pd.DataFrame(columns=["trial_id", "status", "training_iteration"])
        return pd.concat(frames, ignore_index=True)

    def summary(self, metric: str = "val_nrmse") -> pd.DataFrame:
        """One row per trial: status, iterations reached, best/last metric, error line."""
        rows = []
        for t in self.trials:
            h = t.history
            it = int(h["training_iteration"].max()) if "training_iteration" in h and len(h) else 0
            vals = pd.to_numeric(h[metric], errors="coerce") if metric in h else pd.Series(dtype=float)
            rows.append({"trial_id": t.trial_id, "status": t.status, "iterations": it,
                         f"best_{metric}": vals.min() if len(vals) else float("nan"),
                         f"last_{metric}": vals.iloc[-1] if len(vals) else float("nan"),
                         "error": t.error or ""})
        return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ file access
class _Files:
    """Minimal read-only file access over a local folder or a pyarrow filesystem (s3://)."""

    def __init__(self, path: str | Path):
        s = str(path)
        self.remote = "://" in s and not s.startswith("file://")
        if self.remote:
            try:
                from pyarrow import fs as pafs
            except ImportError:
                raise ReportError(f"experiment '{s}': reading remote experiments needs pyarrow. "
                                  f"Fix: pip install 'ups-sweeps[tune]'") from None
            try:
                if s.startswith("s3://"):  # same endpoint/region/credential rules as the sweeps' storage
                    from ups.cloud.storage import resolve_storage

                    self.root, self.fs = resolve_storage(s)
                else:
                    self.fs, self.root = pafs.FileSystem.from_uri(s)
            except Exception as e:
                raise ReportError(f"experiment '{s}': cannot open ({e}). Fix: check the URI and "
                                  f"AWS_ENDPOINT_URL / credentials") from None
            self.root = self.root.rstrip("/")
        else:
            self.root = str(Path(s.removeprefix("file://")).expanduser())

    def join(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts) if self.remote else str(Path(self.root, *parts))

    def is_dir(self, p: str) -> bool:
        if not self.remote:
            return Path(p).is_dir()
        from pyarrow import fs as pafs
        return self.fs.get_file_info(p).type == pafs.FileType.Directory

    def exists(self, p: str) -> bool:
        if not self.remote:
            return Path(p).exists()
        from pyarrow import fs as pafs
        return self.fs.get_file_info(p).type != pafs.FileType.NotFound

    def listdir(self, p: str) -> list[tuple[str, bool]]:
        """(name, is_dir) of the entries of folder p."""
        if not self.remote:
            return [(c.name, c.is_dir()) for c in sorted(Path(p).iterdir())]
        from pyarrow import fs as pafs
        infos = self.fs.get_file_info(pafs.FileSelector(p, recursive=False))
        return sorted((posixpath.basename(i.path), i.type == pafs.FileType.Directory) for i in infos)

    def read_text(self, p: str) -> str:
        if not self.remote:
            return Path(p).read_text(errors="replace")
        with self.fs.open_input_stream(p) as f:
            return f.readall().decode("utf-8", errors="replace")

    def read_bytes(self, p: str) -> bytes:
        if not self.remote:
            return Path(p).read_bytes()
        with self.fs.open_input_stream(p) as f:
            return f.readall()


# ----------------------------------------------------------------------------------------- loading
def read_record(files: _Files) -> dict[str, Any] | None:
    """The sweep's ``ups_sweep.json`` in the experiment folder ``files`` reads; None without one (a folder of
    another tool, a sweep from before records); ValueError when it is not a JSON object."""
    from ups.tune.sweep_record import RECORD  # Ray-free

    try:
        text = files.read_text(files.join(RECORD))
    except OSError:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def sweep_settings(path: str | Path, files: _Files | None = None) -> dict[str, Any]:
    """The defining settings a sweep of this project recorded in its experiment folder (``ups_sweep.json``'s
    ``sweep``: ``scheduler.name``, ``searcher.name``, …); {} for a folder without a readable record."""
    try:
        record = read_record(files or _Files(path))
    except ValueError:
        return {}
    sweep = (record or {}).get("sweep")
    return dict(sweep) if isinstance(sweep, dict) else {}


def load_experiment(path: str | Path) -> ExperimentResults:
    """Read every trial's status, config and reported history from a Tune experiment folder."""
    files = _Files(path)
    if not files.is_dir(files.root):
        raise ReportError(f"experiment '{path}' is not a directory. Fix: pass experiment=<storage_path>/<name> "
                          f"of a Ray Tune run (the folder holding experiment_state-*.json)")
    res = ExperimentResults(path=str(path), sweep=sweep_settings(path, files))
    entries = files.listdir(files.root)
    states = sorted(n for n, d in entries if not d and n.startswith("experiment_state") and n.endswith(".json"))
    trial_dirs = {n for n, d in entries if d and not n.startswith(".")}
    known: list[tuple[str, str, dict[str, Any], str]] = []  # (trial_id, status, config, dirname)
    if states:
        try:
            known = _trials_from_state(files.read_text(files.join(states[-1])))
        except (ValueError, KeyError, TypeError) as e:
            res.notes.append(f"{states[-1]} unreadable ({e}); trial folders scanned instead")
    seen_dirs = set()
    for trial_id, status, config, dirname in known:
        if dirname not in trial_dirs:
            # Tune writes state before a trial's folder exists (PENDING trials)
            res.trials.append(TrialRecord(trial_id, status, config, pd.DataFrame(), None, dirname))
            continue
        seen_dirs.add(dirname)
        res.trials.append(_load_trial(files, dirname, trial_id, status, config, res.notes))
    for dirname in sorted(trial_dirs - seen_dirs):
        names = {n for n, _ in files.listdir(files.join(dirname))}
        if not names & {"result.json", "progress.csv", "params.json", "error.txt"}:
            continue  # not a trial folder (e.g. driver artifacts)
        res.trials.append(_load_trial(files, dirname, None, None, None, res.notes))
    if not res.trials:
        raise ReportError(f"experiment '{path}' holds no Tune trials (no experiment_state-*.json, no trial "
                          f"folders with result.json). Fix: pass the folder <storage_path>/<name> of a Tune run")
    return res


def _trials_from_state(text: str) -> list[tuple[str, str, dict[str, Any], str]]:
    state = json.loads(text)
    out = []
    for item in state["trial_data"]:
        trial_json = item[0] if isinstance(item, (list, tuple)) else item
        t = json.loads(trial_json) if isinstance(trial_json, str) else trial_json
        cfg = t.get("config") if isinstance(t.get("config"), dict) else {}
        dirname = t.get("relative_logdir") or t.get("custom_dirname") or ""
        out.append((str(t["trial_id"]), str(t.get("status") or "UNKNOWN"), cfg, str(dirname)))
    return out


def _load_trial(files: _Files, dirname: str, trial_id: str | None, status: str | None,
                config: dict[str, Any] | None, notes: list[str]) -> TrialRecord:
    d = files.join(dirname)
    history = _read_history(files, d, dirname, notes)
    error = None
    err_path = files.join(dirname, "error.txt")
    if files.exists(err_path):
        lines = [ln for ln in files.read_text(err_path).strip().splitlines() if ln.strip()]
        error = lines[-1].strip()[:300] if lines else "error (empty error.txt)"
    if config is None:
        p = files.join(dirname, "params.json")
        config = {}
        if files.exists(p):
            try:
                config = json.loads(files.read_text(p))
            except ValueError:
                notes.append(f"{dirname}/params.json unreadable")
    if trial_id is None:
        if "trial_id" in history and len(history):
            trial_id = str(history["trial_id"].iloc[-1])
        else:
            trial_id = dirname
    if status is None:
        done = bool(history["done"].astype(str).str.lower().eq("true").any()) if "done" in history else False
        status = "ERROR" if error else ("TERMINATED" if done or len(history) else "UNKNOWN")
    history = history.drop(columns=[c for c in ("trial_id",) if c in history])
    return TrialRecord(trial_id, status, config or {}, history, error, dirname)


def _read_history(files: _Files, d: str, dirname: str, notes: list[str]) -> pd.DataFrame:
    rj = posixpath.join(d, "result.json") if files.remote else str(Path(d, "result.json"))
    pc = posixpath.join(d, "progress.csv") if files.remote else str(Path(d, "progress.csv"))
    if files.exists(rj):
        rows, bad = [], 0
        for line in files.read_text(rj).splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                bad += 1  # a trial killed mid-write leaves a partial last line
                continue
            row.pop("config", None)
            rows.append(row)
        if bad:
            notes.append(f"{dirname}/result.json: skipped {bad} unreadable line(s)")
        if rows:
            return pd.json_normalize(rows, sep="/")
    if files.exists(pc):
        text = files.read_text(pc)
        if text.strip():
            try:
                return pd.read_csv(io.StringIO(text), dtype={"trial_id": str})
            except Exception as e:  # malformed CSV from a killed trial
                notes.append(f"{dirname}/progress.csv unreadable ({type(e).__name__})")
    return pd.DataFrame()
