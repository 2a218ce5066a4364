"""Report figures as PNG files (matplotlib's object API on the Agg canvas; no pyplot state).

Every ``plot_*`` function writes one PNG and returns its path, or raises ``PlotSkipped`` with the
reason (shown in the report instead of the figure). Inputs are the leaderboard frame
(``ups.leaderboard`` columns, normalised by ``sources.normalise_leaderboard``) and the trial
histories from ``experiment.ExperimentResults.histories()``.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ups.leaderboard import is_round_reference
from ups.reports.sources import trial_state

PASS, FAIL, NEUTRAL, ERR, REF = "#2e7d32", "#c62828", "#9e9e9e", "#6a1b9a", "#1565c0"
BASELINE_STYLE = {"persistence": ("#795548", ":"), "linear": ("#607d8b", "--"), "fno": ("#ef6c00", "-.")}


class PlotSkipped(Exception):
    """A figure cannot be drawn from the available results; the message says why."""


def _figure(w: float = 7.0, h: float = 4.2) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _trials(lb: pd.DataFrame) -> pd.DataFrame:
    return lb[lb["kind"] == "trial"]  # not baselines, not full-eval re-evaluations


def _baselines(lb: pd.DataFrame) -> pd.DataFrame:
    b = lb[(lb["kind"] == "baseline") & lb["nrmse"].notna()]
    return b


def _baseline_name(row: pd.Series) -> str:
    for col in ("label", "run_id"):
        v = str(row.get(col) or "")
        for name in BASELINE_STYLE:
            if name in v.lower():
                return name
    return str(row.get("label") or row.get("run_id") or "baseline")


def _draw_baselines(ax: Any, lb: pd.DataFrame) -> None:
    for _, row in _baselines(lb).iterrows():
        name = _baseline_name(row)
        color, ls = BASELINE_STYLE.get(name, ("#000000", ":"))
        ax.axhline(float(row["nrmse"]), color=color, ls=ls, lw=1.2, label=f"{name} baseline {row['nrmse']:.3f}")


def _time_unit(total_s: float) -> tuple[float, str]:
    if total_s >= 2 * 3600:
        return 3600.0, "h"
    if total_s >= 120:
        return 60.0, "min"
    return 1.0, "s"


def _order(t: pd.DataFrame) -> pd.DataFrame:
    key = pd.to_datetime(t["timestamp"], errors="coerce", utc=True)
    return t.assign(_order=key).sort_values(["_order"], kind="stable", na_position="last")


# ----------------------------------------------------------------------------------- 1. cost
def plot_best_vs_cost(lb: pd.DataFrame, path: Path) -> Path:
    """Running best nRMSE against cumulative trial wall clock and GPU-hours, one line per round."""
    t = _trials(lb)
    if t.empty or t["nrmse"].notna().sum() == 0:
        raise PlotSkipped("no finished trial with an nRMSE yet")
    fig = _figure(10, 4.2)
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    total = float(t.groupby("round")["wall_clock"].sum().max() or 0.0)
    scale, unit = _time_unit(total)
    gpu_any = bool((t["gpu_hours"].fillna(0) > 0).any())
    for rnd, g in t.groupby("round", sort=False):
        g = _order(g)
        best = g["nrmse"].cummin().ffill()  # failed trials (NaN) spend cost without a value
        x1 = g["wall_clock"].fillna(0).cumsum() / scale
        ax1.step(x1, best, where="post", marker="o", ms=3, label=f"round {rnd or '?'} ({len(g)} trials)")
        if gpu_any:
            ax2.step(g["gpu_hours"].fillna(0).cumsum(), best, where="post", marker="o", ms=3, label=f"round {rnd}")
    for ax in (ax1, ax2):
        _draw_baselines(ax, lb)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    ax1.set_xlabel(f"cumulative trial wall clock ({unit})")
    ax1.set_ylabel("best test nRMSE so far")
    ax1.legend(fontsize=7)
    ax2.set_xlabel("cumulative GPU-hours")
    if not gpu_any:
        ax2.text(0.5, 0.9, "no GPU-hours recorded\n(CPU-only sweep)", ha="center", va="center",
                 transform=ax2.transAxes, color=NEUTRAL)
    fig.suptitle("Best nRMSE vs compute spent, per round")
    return _save(fig, path)


# ------------------------------------------------------------------------------ 2. ASHA rungs
SURVIVAL_TITLES = {"asha": "ASHA rung survival", "fifo": "Trial survival (FIFO: no early stopping; stops are "
                   "physics gates or errors)", "pbt": "Trial survival (PBT: no early stopping; stops are physics gates "
                   "or errors)"}


def plot_rung_survival(hist: pd.DataFrame, statuses: dict[str, str], path: Path, scheduler: str = "asha") -> Path:
    """Trials still reporting at each training_iteration (ASHA rung survival; under another ``scheduler``, the
    trials a physics gate or an error ended); errored trials marked."""
    if hist.empty or "training_iteration" not in hist:
        raise PlotSkipped("no Tune experiment results (progress.csv / result.json) to read")
    last = hist.groupby("trial_id")["training_iteration"].max()
    n_err = sum(1 for s in statuses.values() if s == "ERROR")
    never = [tid for tid in statuses if tid not in last.index]
    its = np.arange(1, int(last.max()) + 1)
    alive = np.array([(last >= i).sum() for i in its])
    fig = _figure()
    ax = fig.subplots()
    ax.bar(its, alive, color="#1565c0", alpha=0.8, label="trials reporting")
    err_last = [int(last[tid]) if tid in last.index else 0 for tid, s in statuses.items() if s == "ERROR"]
    if err_last:
        counts = pd.Series(err_last).value_counts()
        ax.scatter(counts.index, counts.values, color=FAIL, marker="x", s=60, zorder=3,
                   label=f"errored trials (last iteration), {n_err} total")
    ax.set_xlabel("training_iteration (epochs reported)")
    ax.set_ylabel("trials alive")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(alive.max(), len(statuses)) + 0.5)
    title = f"{SURVIVAL_TITLES.get(scheduler or 'asha', f'Trial survival ({scheduler})')}: {len(statuses)} trials"
    if never:
        title += f", {len(never)} never reported"
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


# --------------------------------------------------------------------------- 3. importance
def plot_importance(importances: dict[str, float], method: str, path: Path) -> Path:
    if not importances:
        raise PlotSkipped(f"parameter importance unavailable: {method}")
    items = sorted(importances.items(), key=lambda kv: kv[1])[-15:]
    fig = _figure(7, 0.4 * len(items) + 1.6)
    ax = fig.subplots()
    # a merged group's note ("(+2 derived)") on a line of its own, so the long keys leave the bars room
    ax.barh([k.replace(" (+", "\n(+") for k, _ in items], [v for _, v in items], color="#00897b")
    ax.set_xlabel("importance (share of explained variation)")
    import textwrap

    fig.suptitle("Parameter importance for test nRMSE\n" + "\n".join(textwrap.wrap(f"({method})", 80)), fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


# ------------------------------------------------------------------------------ 4. TTC paradox
def sized_trials(lb: pd.DataFrame, focus: set[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the focus round's finished trials with params and an nRMSE, every other round's): the first draw the
    size curves.  Without focus trials among them, every round's trials are the first."""
    t = _trials(lb)
    t = t[t["params"].notna() & (t["nrmse"].notna() | t["nrmse_ttc"].notna())]
    if t.empty:
        raise PlotSkipped("no finished trial reports both params and nRMSE")
    own = t[t["run_id"].astype(str).isin(focus)] if focus else t
    if own.empty:
        own = t
    return own, t.drop(own.index)


def plot_ttc_paradox(lb: pd.DataFrame, path: Path, focus: set[str] | None = None) -> Path:
    """nRMSE vs parameter count, with and without TTC (best per parameter count).  ``focus``: the run_ids of the
    report's own round; its trials draw the curves, the other rounds' trials are grey context points (a
    dims report's size curve is not bent by round A's trials at one size)."""
    own, others = sized_trials(lb, focus)
    fig = _figure()
    ax = fig.subplots()
    if not others.empty:
        for col in ("nrmse", "nrmse_ttc"):
            g = others[others[col].notna()]
            ax.scatter(g["params"], g[col], color="#9e9e9e", alpha=0.35, s=12,
                       label="other rounds' trials" if col == "nrmse" else None)
    for col, color, label in (("nrmse", "#1565c0", "without TTC"), ("nrmse_ttc", "#d81b60", "with TTC")):
        g = own[own[col].notna()]
        if g.empty:
            continue
        ax.scatter(g["params"], g[col], color=color, alpha=0.3, s=18)
        best = g.groupby("params")[col].min().sort_index()
        ax.plot(best.index, best.values, color=color, marker="o", label=f"{label} (best per size)")
    _draw_baselines(ax, lb)
    fno = _baselines(lb)
    fno = fno[fno.apply(_baseline_name, axis=1).eq("fno") & fno["params"].notna()]
    for _, row in fno.iterrows():
        ax.scatter([row["params"]], [row["nrmse"]], marker="*", s=140, color=BASELINE_STYLE["fno"][0], zorder=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test nRMSE")
    if own["nrmse_ttc"].notna().sum() == 0:
        ax.set_title("nRMSE vs model size (no TTC results in these trials)")
    else:
        ax.set_title("nRMSE vs model size, with and without TTC (\"TTC paradox\")")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


# ----------------------------------------------------------------------------------- 5. Pareto
def cost_column(lb: pd.DataFrame) -> str:
    t = _trials(lb)
    for col in ("est_cost", "gpu_hours", "wall_clock"):
        if (t[col].fillna(0) > 0).any():
            return col
    return "wall_clock"


def pareto_front(df: pd.DataFrame, cost: str, metric: str = "nrmse") -> pd.DataFrame:
    """Rows not dominated in (cost, metric), both minimised, sorted by cost."""
    d = df[df[cost].notna() & df[metric].notna()].sort_values([cost, metric], kind="stable")
    keep, best = [], np.inf
    for idx, row in d.iterrows():
        if row[metric] < best:
            keep.append(idx)
            best = row[metric]
    return d.loc[keep]


def plot_pareto(lb: pd.DataFrame, path: Path) -> Path:
    t = _trials(lb)
    cost = cost_column(lb)
    d = t[t[cost].notna() & t["nrmse"].notna()]
    if d.empty:
        raise PlotSkipped(f"no finished trial with both nRMSE and {cost}")
    front = pareto_front(d, cost)
    fig = _figure()
    ax = fig.subplots()
    colors = [REF if is_round_reference(r) else PASS if r.get("gate_pass") is True else FAIL
              if r.get("gate_pass") is False else NEUTRAL for _, r in d.iterrows()]  # the reference: the yardstick
    ax.scatter(d[cost], d["nrmse"], c=colors, s=24, alpha=0.8)
    ax.step(front[cost], front["nrmse"], where="post", color="#000000", lw=1.4, label=f"Pareto front ({len(front)})")
    for _, row in front.iterrows():
        ax.annotate(str(row.get("label") or row.get("trial_id") or row["run_id"])[:18], (row[cost], row["nrmse"]),
                    fontsize=6, xytext=(3, 3), textcoords="offset points")
    _draw_baselines(ax, lb)
    ax.set_yscale("log")
    unit = {"est_cost": "estimated cost (USD)", "gpu_hours": "GPU-hours", "wall_clock": "trial wall clock (s)"}[cost]
    ax.set_xlabel(unit)
    ax.set_ylabel("test nRMSE")
    ax.set_title("Pareto front: nRMSE vs cost (green: gates pass, red: fail, grey: ungated)", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


# ------------------------------------------------------------------------ 6. learning curves
def curve_segments(g: pd.DataFrame, xcol: str) -> list[pd.DataFrame]:
    """One trial's reports in the order it made them, cut wherever ``xcol`` goes back. A PBT trial that exploits
    goes on from another trial's checkpoint at an earlier iteration (a resumed trial from its own last
    checkpoint), so it reports those iterations again: one line through all its reports would zig-zag. A report
    at the same x continues the line when it is the final evaluation after the last epoch (``final``); any other
    is a restart from the checkpoint of the report before (a trial killed between its report and the next
    checkpoint reports that epoch again)."""
    x = pd.to_numeric(g[xcol], errors="coerce").to_numpy()
    final = pd.to_numeric(g["final"], errors="coerce").fillna(0).to_numpy() if "final" in g else [0] * len(x)
    cuts = [0, *[i for i in range(1, len(x)) if x[i] < x[i - 1] or (x[i] == x[i - 1] and not final[i])], len(x)]
    return [g.iloc[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


def plot_learning_curves(hist: pd.DataFrame, path: Path, metric: str = "val_nrmse", top: int = 5) -> Path:
    if hist.empty or metric not in hist:
        raise PlotSkipped(f"no '{metric}' in the Tune experiment results")
    h = hist.assign(_m=pd.to_numeric(hist[metric], errors="coerce")).dropna(subset=["_m"])
    # a NaN/Inf report carries the searcher's penalty (1e3) in the metric: not a figure to draw on the nRMSE axis
    penalty = pd.to_numeric(h.get("nonfinite", pd.Series(0, index=h.index)), errors="coerce").fillna(0) > 0
    diverged = set(h.loc[penalty, "trial_id"])
    h = h[~penalty]
    if h.empty:
        raise PlotSkipped(f"'{metric}' was never reported as a number")
    # ranked and labelled on each trial's last report: the figure the leaderboard, TPE and the promotion read (the
    # legend showed each curve's minimum, 0.0805 beside the leaderboard's 0.0833); a diverged trial after the rest
    last, low = h.groupby("trial_id", sort=False)["_m"].last(), h.groupby("trial_id")["_m"].min()
    best = last.add(pd.Series([np.inf if t in diverged else 0.0 for t in last.index], index=last.index)) \
        .sort_values(kind="stable").head(top)
    xcol = "global_epoch" if "global_epoch" in h and h["global_epoch"].notna().all() else "training_iteration"
    fig = _figure()
    ax = fig.subplots()
    restarts = 0
    for tid in best.index:
        segments = curve_segments(h[h["trial_id"] == tid], xcol)
        line = ax.plot(segments[0][xcol], segments[0]["_m"], marker="o", ms=3,
                       label=f"{tid} (last {last[tid]:.3g}" + (f", min {low[tid]:.3g}" if low[tid] < last[tid] else "")
                       + (", then diverged)" if tid in diverged else ")"))[0]
        for seg in segments[1:]:  # same colour; the restart point marked
            ax.plot(seg[xcol], seg["_m"], marker="o", ms=3, color=line.get_color())
            ax.plot(seg[xcol].iloc[:1], seg["_m"].iloc[:1], marker="D", ms=6, ls="none", mfc="none",
                    color=line.get_color(), label=None if restarts else "continued from a checkpoint "
                                                                         "(PBT exploit or resume)")
            restarts += 1
    ax.set_yscale("log")
    ax.set_xlabel(xcol)
    ax.set_ylabel(metric)
    ax.set_title(f"Learning curves of the top {len(best)} trials (by their last {metric})"
                 + (f" ({restarts} restart(s) from a checkpoint)" if restarts else ""))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


# -------------------------------------------------------------------------------- 7. gates
def gate_counts(trials: pd.DataFrame) -> str:
    """"2 pass, 3 FAIL, 1 reference, 1 stopped early": the gates figure's bars counted in their own words (FAIL is
    a trial the small-eval gates refused, reference the trial they measure the others against, no gate one the
    round's promotion has not judged, errored one without a metric); a count of 0 is left out, except pass."""
    state = trials.apply(trial_state, axis=1)
    ref = pd.Series([is_round_reference(r) for _, r in trials.iterrows()], index=trials.index, dtype=bool)
    gated = state.eq("ok") & ~ref
    n_pass = int((gated & (trials["gate_pass"] == True)).sum())  # noqa: E712
    n_fail = int((gated & (trials["gate_pass"] == False)).sum())  # noqa: E712
    counts = [f"{n_fail} FAIL", f"{int((state.eq('ok') & ref).sum())} reference",
              f"{int(gated.sum()) - n_pass - n_fail} no gate",
              f"{int(state.eq('stopped').sum())} stopped early", f"{int(state.eq('running').sum())} unfinished",
              f"{int(state.eq('failed').sum())} errored"]
    return ", ".join([f"{n_pass} pass"] + [c for c in counts if not c.startswith("0 ")])


def _short_label(row: pd.Series, width: int = 28) -> str:
    """A trial's label cut to ``width`` characters; a cut one ends with its trial id, so that two trials whose
    labels differ only past the cut ("tokens=24, hidden_dim=96, …, heads=4" / "heads=6") stay apart."""
    name = str(row.get("label") or row.get("trial_id") or row["run_id"])
    if len(name) <= width:
        return name
    tid = str(row.get("trial_id") or row["run_id"])[-8:]
    return f"{name[: width - len(tid) - 2]}… {tid}"


def gate_bars(trials: pd.DataFrame, limit: int = 40) -> list[tuple[str, float, str, str]]:
    """The gates figure's bars, best first, errored and stopped trials last: (label, test nRMSE or 0, colour,
    note written on a bar without a metric)."""
    state = trials.apply(trial_state, axis=1)
    t = trials.assign(_failed=state.eq("failed"), _stopped=state.isin(["stopped", "running"]), _state=state)
    bars = []
    for _, row in t.sort_values(["_failed", "_stopped", "nrmse"], kind="stable").head(limit).iterrows():
        name = _short_label(row)
        if row["_failed"] or row["_stopped"]:
            note = (" errored: no metric" if row["_failed"] else " unfinished: resume=true continues it"
                    if row["_state"] == "running" else f" stopped early: {str(row.get('stop_reason') or '')[:40]}")
            bars.append((f"{name} [{row['status'] or row['_state']}]", 0.0, ERR if row["_failed"] else NEUTRAL, note))
        elif is_round_reference(row):  # the gates' yardstick: refused by construction, not a FAIL
            bars.append((f"{name} [reference]", float(row["nrmse"]), REF, ""))
        else:
            g = row["gate_pass"]
            bars.append((f"{name} [{'pass' if g is True else 'FAIL' if g is False else 'no gate'}]",
                         float(row["nrmse"]), PASS if g is True else FAIL if g is False else NEUTRAL, ""))
    return bars


def plot_gates(lb: pd.DataFrame, path: Path, limit: int = 40) -> Path:
    t = _trials(lb)
    if t.empty:
        raise PlotSkipped("no trial rows")
    bars = gate_bars(t, limit)
    labels, vals, colors, notes = (list(c) for c in zip(*bars))
    fig = _figure(7, 0.28 * len(bars) + 1.8)
    ax = fig.subplots()
    y = np.arange(len(labels))
    ax.barh(y, vals, color=colors)
    for yi, (note, c) in enumerate(zip(notes, colors)):
        if note:
            ax.text(0, yi, note, va="center", fontsize=7, color=c)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    for _, row in _baselines(lb).iterrows():
        name = _baseline_name(row)
        color, ls = BASELINE_STYLE.get(name, ("#000000", ":"))
        ax.axvline(float(row["nrmse"]), color=color, ls=ls, lw=1.1, label=f"{name} {row['nrmse']:.3f}")
    ax.set_xlabel("test nRMSE")
    # all trials, not the first `limit`; wrapped: six counts run past a 7-inch figure's edge
    ax.set_title(textwrap.fill("Physics gates per trial: " + gate_counts(_trials(lb)), 64), fontsize=9)
    if len(_baselines(lb)):
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


# ------------------------------------------------------------------------ 8. champion rollout
def plot_rollout(truth: np.ndarray, pred: np.ndarray, x: np.ndarray, t: np.ndarray, initial_step: int,
                 title: str, path: Path) -> Path:
    """Space-time truth, prediction, |error| for one test trajectory, plus snapshots.

    truth, pred: (T, X) including the initial_step context frames (copied into pred).
    """
    err = np.abs(pred - truth)
    fig = _figure(12, 6.5)
    axes = fig.subplots(2, 3)
    vmin, vmax = float(truth.min()), float(truth.max())
    extent = (float(x[0]), float(x[-1]), float(t[-1]), float(t[0]))
    for ax, img, name, cmap, lim in ((axes[0, 0], truth, "truth", "RdBu_r", (vmin, vmax)),
                                     (axes[0, 1], pred, "prediction (no TTC)", "RdBu_r", (vmin, vmax)),
                                     (axes[0, 2], err, "|error|", "magma", (0, float(err.max()) or 1.0))):
        im = ax.imshow(img, aspect="auto", extent=extent, cmap=cmap, vmin=lim[0], vmax=lim[1])
        ax.axhline(float(t[initial_step - 1]), color="k", lw=0.8, ls="--")
        ax.set_title(name)
        ax.set_xlabel("x")
        ax.set_ylabel("t")
        fig.colorbar(im, ax=ax, shrink=0.8)
    T = truth.shape[0]
    picks = sorted({initial_step, initial_step + (T - initial_step) // 2, T - 1})
    for ax, k in zip(axes[1], picks):
        ax.plot(x, truth[k], color="k", lw=1.4, label="truth")
        ax.plot(x, pred[k], color="#d81b60", lw=1.2, ls="--", label="prediction")
        ax.set_title(f"t = {float(t[k]):.2f} (frame {k})")
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)
