"""What a sweep returns (``SweepOutcome``) and the leaderboard table it prints at its end."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ups.leaderboard import trial_standing


@dataclass
class SweepOutcome:
    experiment: str
    experiment_path: str
    leaderboard: Path
    rows: pd.DataFrame
    champion: dict[str, Any] | None = None
    report: Path | None = None
    baseline_rows: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    failed: list[str] = field(default_factory=list)  # run_ids of this sweep's trials that errored past max_failures
    exit_status: int = 0  # the round script's: 1 when ``failed`` and ``fail_on_trial_error`` (the default)


def leaderboard_table(o: SweepOutcome, top: int, key: str | None = None) -> tuple[list[str], list[list[str]]]:
    """The rows the sweep prints at its end, best first: this experiment's best ``top`` trials and every baseline. A trial is
    named by its trial id (the title names the experiment, run_id = experiment-trial id); ``gates`` says why a
    trial failed the small-eval gates, the sentence the leaderboard's ``gate_reasons`` holds without its
    "vs reference trial …:" preamble.  ``key``: the promotion's ranking figure (``promotion_key``), when known."""
    df = o.rows
    df = df[(df["experiment"] == o.experiment) | (df["run_id"].isin([b["run_id"] for b in o.baseline_rows]))].copy()
    # evaluated trials on their test nRMSE, then the rest on their val nRMSE: sound ones, gate-stopped, errored
    df["_sort"] = pd.to_numeric(df["nrmse"], errors="coerce").fillna(
        pd.to_numeric(df.get("val_nrmse"), errors="coerce") + 10.0).fillna(1e9)
    df["_sort"] += [1e10 * trial_standing(r) for r in df.to_dict("records")]
    key = key or promotion_key(o)  # a sweep that searches ttc.* keys promotes on val_nrmse_ttc: shown beside it
    vals = ["val_nrmse", "val_nrmse_ttc"] if key == "val_nrmse_ttc" else ["val_nrmse"]
    cols = ["trial", "label", *vals, "nrmse", "nrmse_ttc", "cons_gap", "bc_viol", "wall_s", "status", "gates",
            "promotion"]
    is_base = df["kind"].astype(str) == "baseline" if "kind" in df else pd.Series(False, index=df.index)
    # the best ``top`` trials, and the baselines always (20 trials better than persistence hid them all)
    shown = pd.concat([df[~is_base].sort_values("_sort").head(top), df[is_base]])
    out = []
    for _, r in shown.sort_values("_sort", kind="stable").iterrows():
        base = str(r.get("kind")) == "baseline"
        status = _fmt(r.get("status"))
        reason = _fmt(r.get("stop_reason"))
        if reason and reason not in (status, "completed", "baseline"):
            status = f"{status}: {reason}"
        out.append(["baseline" if base else _fmt(r.get("trial_id")) or _fmt(r.get("run_id")), _fmt(r.get("label")),
                    *[_fmt(r.get(c)) for c in (*vals, "nrmse", "nrmse_ttc", "conservation_gap", "bc_violation",
                                               "wall_clock")],
                    status, "" if base else _gates_cell(r), _fmt(r.get("promotion"))])
    return cols, out


def promotion_key(o: SweepOutcome) -> str:
    """The validation figure this sweep's promotion ranks its candidates on (``ups.leaderboard.selection_key`` of
    its finished trials): ``val_nrmse_ttc`` in a sweep that searches ``ttc.*`` keys, else ``val_nrmse``."""
    from ups.leaderboard import selection_key

    df = o.rows
    done = df[(df["experiment"] == o.experiment) & (df["kind"].astype(str) == "trial")
              & pd.to_numeric(df["nrmse"], errors="coerce").notna()] if len(df) else df
    return selection_key(done.to_dict("records")) if len(done) else "val_nrmse"


def _gates_cell(r: Any) -> str:
    from ups.leaderboard import NO_EVAL_REASON, is_round_reference

    if is_round_reference(r):
        return "reference"
    passed = r.get("gate_pass")
    if passed is None or (isinstance(passed, float) and passed != passed):
        return ""
    text = str(r.get("gate_reasons") or "")
    text = text.split(": ", 1)[1] if text.startswith("vs ") and ": " in text else text
    if str(passed).lower() in ("true", "1", "1.0"):
        return "pass"
    if text.startswith(NO_EVAL_REASON):  # stopped early: the status column says so already
        return "no eval"
    return f"FAIL: {text}" if text else "FAIL"


def print_leaderboard(o: SweepOutcome, top: int) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    key = promotion_key(o)
    cols, rows = leaderboard_table(o, top, key)
    if not rows:  # print_top=0 and no baselines: no table (an empty frame said nothing)
        return
    # ranked as the baselines can be: on test nRMSE (trials without an eval after, on val): not the promotion's order
    t = Table(title=f"Leaderboard — {o.experiment}", show_lines=False,
              caption="ranked on test nrmse, next to the baselines; the promotion picks on "
                      + (f"validation ({key})" if key.startswith("val_")
                         else "test nrmse (its trials recorded no val figure)"))
    for c in cols:
        t.add_column(c, overflow="fold", max_width=44 if c in ("label", "status", "gates") else None)
    for r in rows:
        t.add_row(*r)
    # a terminal's own width (a fixed 200 wrapped every line of a narrower one); a log file gets 200
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(t)
    if counts := trial_counts(o, top):
        console.print(counts, highlight=False)


STATUS_WORDS = {"stopped": "stopped early (ASHA or a gate)"}


def trial_counts(o: SweepOutcome, top: int) -> str:
    """What the table above leaves out, in a line: this sweep's trials by status and by small-eval gate, and how many
    are not in the table (a 32-trial sweep printed its best 15 and said nothing of the other 17)."""
    df = o.rows
    if not len(df) or "kind" not in df:
        return ""
    trials = df[(df["experiment"] == o.experiment) & (df["kind"].astype(str) == "trial")]
    if trials.empty:
        return ""
    status = trials["status"].fillna("").astype(str).value_counts()
    by_status = ", ".join(f"{n} {STATUS_WORDS.get(s, s) or 'no status'}" for s, n in status.items())
    gates = pd.Series([_gates_cell(r) for r in trials.to_dict("records")]).map(
        lambda g: "fail" if g.startswith("FAIL") else g).value_counts()
    by_gate = ", ".join(f"{gates[g]} {g}" for g in ("pass", "fail", "reference", "no eval") if g in gates)
    hidden = len(trials) - min(top, len(trials))
    more = (f"; {hidden} more not in the table above (every one: {o.leaderboard}"
            + (f", {o.report}" if o.report else "") + ")") if hidden > 0 else ""
    return (f"{o.experiment}: {len(trials)} trials: {by_status}"
            + (f"; small-eval gates: {by_gate}" if by_gate else "") + more)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
