"""The sweep leaderboard: one CSV row per finished trial (no Ray import).

Rows are keyed by ``run_id``; appending a row whose run_id exists replaces it, so a resumed sweep
never duplicates rows.  Writes are atomic (temp file + rename) and guarded by a lock file.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ups.filelock import exclusive_lock
from ups.outputs import atomic_path

# PDEBench's metric set besides nRMSE, as its metric_func computes it (ups.metrics.pdebench_metric_set, whose
# PDEBENCH_SET_KEYS these are; spelt out here so that the leaderboard needs no torch): trials, full evals, baselines
PDEBENCH_COLUMNS: tuple[str, ...] = ("rmse_pdebench", "crmse_pdebench", "brmse_pdebench", "max_err_pdebench",
                                     "frmse_low_pdebench", "frmse_mid_pdebench", "frmse_high_pdebench")
PDEBENCH_NAMES: dict[str, str] = dict(zip(PDEBENCH_COLUMNS, ("RMSE", "cRMSE", "bRMSE", "Max", "fRMSE low", "fRMSE mid",
                                                             "fRMSE high")))  # as the PDEBench paper's tables name them
# what a final evaluation (a finished trial's, a full eval's) records on the leaderboard, and a champion keeps;
# recon_nrmse: the autoencoder's round trip of the true test frames (ups.reconstruction), the error a perfect
# operator would leave
EVAL_COLUMNS: tuple[str, ...] = ("nrmse", "nrmse_ttc", "nrmse_pdebench", "conservation_gap", "energy_violation",
                                 "bc_violation", "ece", "rollout_horizon", *PDEBENCH_COLUMNS, "recon_nrmse")
LEADERBOARD_COLUMNS: list[str] = [
    "run_id", "timestamp", "label", "round", "kind",  # kind: trial | baseline
    "nrmse", "nrmse_ttc", "nrmse_pdebench", "conservation_gap", "energy_violation", "bc_violation",
    "ece", "rollout_horizon", "wall_clock", "gpu_hours", "est_cost", "params",
    "status", "stop_reason", "gate_pass", "gate_reasons", "promotion",  # promotion: small_eval|full_eval|champion
    "tags", "config_hash", "checkpoint", "trial_id", "experiment", "config_json", *PDEBENCH_COLUMNS,
    "recon_nrmse",
]

# the columns the sweeps, promotion and reports read as numbers (leaderboard_problem checks them)
NUMERIC_COLUMNS: tuple[str, ...] = (*EVAL_COLUMNS, "val_nrmse", "val_nrmse_ttc", "wall_clock", "gpu_hours", "est_cost",
                                    "params", "epochs")

# gate_reasons of the trial a round's gates measure the others against (promotion writes it)
REFERENCE_REASON = "this trial is the round baseline (reference)"
# gate_reasons of a trial stopped before its final evaluation (ASHA, PBT, a budget): not judged, so not promotable
NO_EVAL_REASON = "no small-eval (trial stopped before its final evaluation)"


def has_tag(tags: Any, tag: str) -> bool:
    """Whether a ``tags`` cell (``a;b;c``) holds ``tag`` itself (a user's tag may contain its letters)."""
    return tag in (tags if isinstance(tags, str) else "").split(";")


def is_round_reference(row: Any) -> bool:
    """Whether a leaderboard row (dict / Series) is its round's gate baseline, not a trial the gates judged."""
    return REFERENCE_REASON in str(row.get("gate_reasons") or "")


def gate_word(row: Any) -> str:
    """A row's small-eval gate (``gate_pass``) in the report's words: pass, FAIL, reference (the round's yardstick,
    which ``gate_pass`` records as False), no eval (a trial stopped before its final evaluation: nothing to judge,
    so not promotable, and ``gate_pass`` is False; it failed no gate), or "" where the round's promotion has not
    judged it."""
    g = row.get("gate_pass")
    if g is None or (isinstance(g, float) and math.isnan(g)) or (isinstance(g, str) and g == ""):
        return ""
    if is_round_reference(row):
        return "reference"
    if g is False and NO_EVAL_REASON in str(row.get("gate_reasons") or ""):
        return "no eval"
    return "pass" if g is True else "FAIL" if g is False else str(g)


def finite_or_none(v: Any) -> float | None:
    """A leaderboard cell as a finite float; None for blanks, text, NaN and ±inf."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def trial_standing(row: Any) -> int:
    """How far a trial row got, for ranking it among others: 0 it ran as asked (completed, or stopped by ASHA, a
    sweep budget or an interrupt), 1 a physics gate stopped it (``stop_reason`` ``gate:…``: NaN, conservation, BC,
    diverging), 2 it errored.  A lower val nRMSE never ranks a broken trial above a sound one: an errored trial's
    last report, or a conserving-nothing one's, is not a result."""
    if str(row.get("status") or "") == "error":
        return 2
    return 1 if str(row.get("stop_reason") or "").startswith("gate:") else 0


SELECTION_KEYS = ("val_nrmse_ttc", "val_nrmse")  # the validation figures a best trial is chosen on, in order


def selection_key(rows: Iterable[Mapping[str, Any]]) -> str:
    """The column ``rows`` (leaderboard records) are ranked on: the first of ``SELECTION_KEYS`` every row has a finite
    value of (``val_nrmse_ttc``: sweeps that search ``ttc.*`` keys; ``val_nrmse``: the sweep's trials), else the test
    ``nrmse`` (rows written by other tools): never the test split where a validation figure exists."""
    rows = list(rows)
    return next((k for k in SELECTION_KEYS if all(finite_or_none(r.get(k)) is not None for r in rows)), "nrmse")


def _locked(path: Path) -> contextlib.AbstractContextManager[None]:
    return exclusive_lock(Path(str(path) + ".lock"))


# Identifier and text columns, read as text whatever they look like: name=2024 made every run_id "2024-…" but the
# experiment column the number 2024, so no row matched its sweep (no gates, no promotion, an empty table).
TEXT_COLUMNS = ("run_id", "trial_id", "config_hash", "experiment", "round", "label", "kind", "name", "tags",
                "data_hash", "status", "stop_reason", "promotion", "checkpoint")


def read_leaderboard(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS)
    df = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})
    for c in LEADERBOARD_COLUMNS:
        if c not in df.columns:
            df[c] = None
    return df


def scored_data(path: str | Path, experiment: str) -> list[str]:
    """The data sets (``data_hash``, first 12 characters) the trials of ``experiment`` on the leaderboard at ``path``
    were scored on, sorted; [] when none says (no such trials, no leaderboard there, or one from before the
    ``data_hash`` column)."""
    lb = read_leaderboard(path)
    if "data_hash" not in lb:
        return []
    rows = lb[(lb["experiment"] == experiment) & (lb["kind"] == "trial")]
    return sorted({str(h)[:12] for h in rows["data_hash"].dropna() if str(h)})


def leaderboard_problem(path: str | Path) -> str | None:
    """Why an existing leaderboard file cannot be read and appended to, in words for an error message; None
    when it can (or there is none yet: the first rows start it).  A file that is not CSV, or a CSV without a
    ``run_id`` column (another separator, another table), would otherwise fail only when the sweep writes
    its first rows, after the data and baselines, or be rewritten into UPS's columns."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        df = read_leaderboard(path)
    except Exception as e:  # pandas parser errors, bad encodings
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"cannot be read as CSV ({type(e).__name__}: {why})"
    header = [str(c) for c in pd.read_csv(path, nrows=0).columns]
    if "run_id" not in header or ("nrmse" not in header and len(df)):
        shown = ", ".join(header[:6]) + (", …" if len(header) > 6 else "")
        return (f"has no 'run_id'/'nrmse' columns (its header: {shown[:120]}): not a UPS leaderboard, or saved with "
                f"another separator than ','")
    ids = df["run_id"].astype(str)
    if (ids == "run_id").any():  # two leaderboards concatenated (cat a.csv b.csv): the second header is a row
        return (f"has its header line again as a row (line {int((ids == 'run_id').to_numpy().argmax()) + 2}): two "
                f"leaderboards joined with cat? Keep one header line")
    for col in NUMERIC_COLUMNS:  # a hand edit: found only when the sweep printed its summary, after its compute
        if col not in df.columns or df[col].dtype.kind in "fiub":
            continue
        cells = df[col].dropna()
        bad = cells[pd.to_numeric(cells, errors="coerce").isna()]
        if len(bad):
            i = bad.index[0]
            return (f"has {len(bad)} non-numeric '{col}' cell(s) (e.g. {str(bad.iloc[0])[:40]!r} on line {i + 2}, run "
                    f"{ids.loc[i]}); the column holds numbers: put the number back or leave the cell empty")
    dup = ids[ids.duplicated()]
    if len(dup):  # every writer replaces a run's row: two rows of one run double its trial in counts and plots
        return (f"has {len(dup)} run_id(s) on more than one row (e.g. {dup.iloc[0]}); each run has one row. Keep "
                f"the last of each, e.g. python -c \"import pandas as p; f='{path}'; "
                f"p.read_csv(f).drop_duplicates('run_id', keep='last').to_csv(f, index=False)\"")
    return None


# counts, written as integers: a column with a blank cell comes back from the CSV as floats, and was written "42.0"
INTEGER_COLUMNS = ("params", "epochs", "seed", "fno_steps", "n_train", "n_test", "gpu_mem_peak_mib", "gpu_mem_total_mib")


def _integers(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with each ``INTEGER_COLUMNS`` column whose filled cells are all whole numbers as pandas' nullable
    ``Int64`` (blanks stay blank); a column holding anything else (a hand-written note) is left as it is."""
    out = df.copy()
    for c in INTEGER_COLUMNS:
        if c not in out.columns:
            continue
        filled = out[c].notna() & (out[c].astype(str).str.strip() != "")
        v = pd.to_numeric(out[c].where(filled), errors="coerce")
        if filled.any() and v[filled].notna().all() and (v[filled] % 1 == 0).all():
            out[c] = v.astype("Int64")
    return out


def _write(df: pd.DataFrame, path: Path) -> None:
    cols = LEADERBOARD_COLUMNS + [c for c in df.columns if c not in LEADERBOARD_COLUMNS]
    with atomic_path(path) as tmp:
        _integers(df.reindex(columns=cols)).to_csv(tmp, index=False)


def upsert_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Insert or replace rows by run_id; returns the full leaderboard."""
    path = Path(path)
    new = pd.DataFrame(list(rows))
    with _locked(path):
        df = read_leaderboard(path)
        if len(new):
            new["run_id"] = new["run_id"].astype(str)
            new = new.drop_duplicates("run_id", keep="last")  # one row per run_id, the batch's last wins
            df = df[~df["run_id"].astype(str).isin(set(new["run_id"]))]
            df = new if df.empty else pd.concat([df, new], ignore_index=True)
        _write(df, path)
    return df


def update_column(path: str | Path, run_ids: Iterable[str], column: str, value: Any) -> None:
    """Set ``column`` to ``value`` in the rows of ``run_ids``."""
    set_values(path, column, {rid: value for rid in run_ids})


def set_values(path: str | Path, column: str, values: Mapping[str, Any]) -> None:
    """Set ``column`` row by row: ``values`` maps run_id → its new value (run_ids not on the leaderboard: none)."""
    path = Path(path)
    values = {str(k): v for k, v in values.items()}
    with _locked(path):
        df = read_leaderboard(path)
        df[column] = df[column].astype(object)
        rid = df["run_id"].astype(str)
        hit = rid.isin(values)
        df.loc[hit, column] = [values[r] for r in rid[hit]]
        _write(df, path)
