"""Side-by-side comparison of the best trials of two sweep rounds, with deltas (``ups report compare``).

The nRMSE rows (without and with TTC) carry a paired-bootstrap interval of the difference over the test
samples both trials were scored on (``eval_samples_json``), and their verdict reads that interval: a
difference inside test-sample noise is "no clear difference", not a win.  The interval does not hold
training-seed noise (a configuration retrained with another seed moves about as much:
``benchmarks/trial_noise.py``); ``promotion.seeds=N`` is the sweep's answer to that."""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ups.config import flatten
from ups.outputs import write_text_atomic
from ups.reports.html import CSS
from ups.reports.sources import (ReportError, baselines_on, best_trial, cell_text, is_failed, load_leaderboard,
                                 rounds_in, row_config)
from ups.ttc_gain import CONFIDENCE, MIN_SAMPLES, mean_difference_interval, read_eval_samples

METRICS = ["nrmse", "nrmse_ttc", "nrmse_pdebench", "conservation_gap", "energy_violation", "bc_violation",
           "ece", "rollout_horizon", "wall_clock", "gpu_hours", "est_cost", "params"]
HIGHER_IS_BETTER = {"rollout_horizon"}
NEUTRAL = {"params", "wall_clock", "gpu_hours", "est_cost"}  # cost, not quality
PAIRED = ("nrmse", "nrmse_ttc")  # metrics with per-test-sample figures (eval_samples_json): an interval
TEXT = ["run_id", "label", "trial_id", "status", "gate_pass", "gate_reasons", "promotion", "checkpoint"]


def trials_named(lb: pd.DataFrame, name: str, source: str = "leaderboard") -> pd.DataFrame:
    """The trial rows of a round (``round_a``: all its sweeps) or, failing that, of one sweep (an experiment
    name such as ``round_a-20261204-031221`` or a ``name=`` given to a sweep: two sweeps of one round, e.g.
    under ASHA and under PBT, compared)."""
    trials = lb[lb["kind"] == "trial"]
    if name in rounds_in(lb):
        return trials[trials["round"] == name]
    if name in set(trials["experiment"].dropna().astype(str)):
        return trials[trials["experiment"].astype(str) == name]
    present = rounds_in(lb)
    recent = list(trials.sort_values("timestamp")["experiment"].dropna().astype(str).drop_duplicates().iloc[::-1][:5])
    raise ReportError(f"{source}: no trials of a round or sweep named '{name}'. Rounds present: "
                      f"{', '.join(present) or 'none'}; latest sweeps: {', '.join(recent) or 'none'}. Fix: ups report "
                      f"compare <round or sweep> <round or sweep> with two of those")


def compare_rounds(lb: pd.DataFrame, round_a: str, round_b: str, source: str = "leaderboard") -> dict[str, Any]:
    """Best trial of each round (or sweep: ``trials_named``), per-metric deltas (B − A) and the config keys that
    differ."""
    chosen = {r: trials_named(lb, r, source) for r in (round_a, round_b)}
    chosen, data_note = same_data(chosen)
    rows, stats = {}, {}
    for r in (round_a, round_b):
        t = chosen[r]
        best = best_trial(t)
        if best is None:
            raise ReportError(f"{source}: round '{r}' has no finished trial with an nRMSE "
                              f"({len(t)} rows, all failed). Fix: re-run or resume that round")
        rows[r] = best
        failed = t.apply(is_failed, axis=1)
        stats[r] = {"trials": len(t), "failed": int(failed.sum()),
                    "gates passed": int((t["gate_pass"] == True).sum()),  # noqa: E712
                    "total wall clock (s)": float(t["wall_clock"].fillna(0).sum())}
    a, b = rows[round_a], rows[round_b]
    pairs = paired_samples(a, b)
    hashes = {r: cell_text(rows[r].get("data_hash"))[:12] for r in rows}
    other_data = bool(hashes[round_a] and hashes[round_b] and hashes[round_a] != hashes[round_b])
    metrics = []
    for m in METRICS:
        va, vb = _num(a.get(m)), _num(b.get(m))
        delta = vb - va if va is not None and vb is not None else None
        rel = delta / abs(va) if delta is not None and va not in (None, 0) else None
        verdict = ""
        if delta is not None and m not in NEUTRAL and other_data:  # OTHER_DATA: scores on other data do not compare
            verdict = "no verdict (other data)"
        elif delta is not None and m not in NEUTRAL and delta != 0:
            better = delta > 0 if m in HIGHER_IS_BETTER else delta < 0
            verdict = f"{round_b} better" if better else f"{round_a} better"
        row = {"metric": m, round_a: va, round_b: vb, "delta": delta, "relative": rel, "verdict": verdict}
        if m in PAIRED:
            row.update(_interval(pairs, m, round_a, round_b))
        metrics.append(row)
    ca, cb = flatten(row_config(a)), flatten(row_config(b))
    config_diff = [{"key": k, round_a: ca.get(k), round_b: cb.get(k)} for k in sorted(set(ca) | set(cb))
                   if not k.startswith("run.") and str(ca.get(k)) != str(cb.get(k))]
    return {"rounds": [round_a, round_b], "best": {r: {k: _clean(rows[r].get(k)) for k in TEXT} for r in rows},
            "metrics": metrics, "stats": stats, "config_diff": config_diff,
            "baselines": {r: baselines_on(lb, hashes[r]) for r in rows},
            "other_data": other_data,
            "data_note": data_note}


def same_data(chosen: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], str | None]:
    """Each round's trials restricted to one test data set when a round spans several (smoke and full profiles,
    or a data.* override, on one leaderboard: their nRMSE do not compare, so neither does a best picked across
    them): the data set both rounds were scored on (the newest such trial's, when they share several), else each
    round's newest; only data sets with a finished trial (an nRMSE) count, when the round has one.  Returns (the
    trials, a note naming what was left out, or None)."""
    h12 = {r: t["data_hash"].fillna("").astype(str).str[:12] if "data_hash" in t else pd.Series("", index=t.index)
           for r, t in chosen.items()}
    all_sets = {r: set(h) - {""} for r, h in h12.items()}
    if all(len(s) <= 1 for s in all_sets.values()):
        return chosen, None

    def finished(r: str) -> pd.Series:  # rows that can be a round's best; every row when none can (the error says so)
        t = chosen[r]
        ok = pd.to_numeric(t["nrmse"], errors="coerce").notna() if "nrmse" in t else pd.Series(True, index=t.index)
        return ok if ok.any() else pd.Series(True, index=t.index)

    ok = {r: finished(r) for r in chosen}
    sets = {r: set(h12[r][ok[r]]) - {""} for r in chosen}
    shared = set.intersection(*sets.values())

    def newest(r: str, among: set[str]) -> str:
        if not among:  # no trial of r names its data (rows from before data_hash, other tools): kept as they are
            return ""
        t = chosen[r][h12[r].isin(among) & ok[r]].sort_values("timestamp", kind="stable")
        return str(t["data_hash"].iloc[-1])[:12]

    if shared:
        both = pd.concat([chosen[r][h12[r].isin(shared) & ok[r]] for r in chosen]).sort_values("timestamp",
                                                                                                  kind="stable")
        pick = {r: str(both["data_hash"].iloc[-1])[:12] for r in chosen}
        why = "the data both were scored on" + (", the newest trial's of those" if len(shared) > 1 else "")
    else:
        pick = {r: newest(r, sets[r]) for r in chosen}
        why = "each round's newest trial's data: the rounds share no data set"
    parts = [f"{r}'s trials were scored on {len(all_sets[r])} test data sets (data_hash "
             f"{', '.join(sorted(all_sets[r]))}); {int((h12[r] != pick[r]).sum())} on other data left out"
             for r in chosen if len(all_sets[r]) > 1]
    shown = " and ".join(dict.fromkeys(v or "(data not recorded)" for v in pick.values()))
    note = (f"{'; '.join(parts)}. Compared on {shown} ({why}), as nRMSE on "
            f"other test data do not compare. Fix: ups report compare <sweep> <sweep> with two sweeps (experiment "
            f"names) of the data you want compared")
    return {r: t[h12[r] == pick[r]] for r, t in chosen.items()}, note


OTHER_DATA = ("the two best trials were scored on different test data (data_hash differs: another profile or data.* "
              "setting, or a data generator changed in between: ups.data.cache.DATA_VERSION), so their nRMSE do not "
              "compare and no metric gets a verdict; each is set against its own data's baselines below")


def _baseline_line(c: dict[str, Any], r: str) -> str:
    return ", ".join(f"{k} {_f(v)}" for k, v in c["baselines"][r].items()) or "none on the leaderboard"


def paired_samples(a: pd.Series, b: pd.Series) -> dict[str, Any]:
    """Per-test-sample nRMSE (without, with TTC) of two trials on the test samples both were scored on:
    ``{"nrmse": (a, b), "nrmse_ttc": (a, b), "note": …}``; else ``{"why": <reason>}``.  Trials of profiles with
    another ``eval.max_samples`` share the first samples of the test split (the note says so)."""
    sa, sb = read_eval_samples(a.get("eval_samples_json")), read_eval_samples(b.get("eval_samples_json"))
    if sa is None or sb is None:
        return {"why": "no per-sample figures (eval_samples_json) on "
                       + " and ".join(str(r.get("run_id")) for r, s in ((a, sa), (b, sb)) if s is None)}
    ha, hb = (str(r.get("data_hash") or "") for r in (a, b))
    if ha and hb and ha != hb:
        return {"why": f"scored on other data (data_hash {ha[:8]} vs {hb[:8]})"}
    n = min(sa[0].size, sb[0].size)  # eval.max_samples keeps the test split's first N: the first n are shared
    note = "" if sa[0].size == sb[0].size else f"the first {n} test samples, scored by both ({sa[0].size} vs {sb[0].size})"
    return {"nrmse": (sa[0][:n], sb[0][:n]), "nrmse_ttc": (sa[1][:n], sb[1][:n]), "note": note}


def _interval(pairs: dict[str, Any], m: str, ra: str, rb: str) -> dict[str, Any]:
    """The interval fields of one paired metric's row, and its verdict read from the interval."""
    if m not in pairs:
        return {"interval": None, "n_samples": 0, "interval_note": pairs["why"]}
    lo, hi = mean_difference_interval(*pairs[m])
    n = int(pairs[m][0].size)
    out: dict[str, Any] = {"interval": [lo, hi], "n_samples": n, "interval_note": pairs["note"]}
    if n < MIN_SAMPLES:
        out["interval_note"] = "; ".join(filter(None, [pairs["note"], f"{n} test samples: too few to read an "
                                                                      f"interval (needs {MIN_SAMPLES})"]))
        d = float((pairs[m][1] - pairs[m][0]).mean())  # on the shared samples, like the interval
        if d != 0:
            out["verdict"] = f"{rb if d < 0 else ra} better? ({n} samples, not resolved)"
    elif lo > 0 or hi < 0:
        out["verdict"] = f"{ra} better" if lo > 0 else f"{rb} better"
    else:
        out["verdict"] = "no clear difference"
    return out


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def _f(v: Any, pct: bool = False) -> str:
    if v is None:
        return "—"
    if pct:
        return f"{100 * v:+.1f}%"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_text(c: dict[str, Any]) -> str:
    ra, rb = c["rounds"]
    w = max(14, len(ra) + 2, len(rb) + 2)  # two sweeps' names (round_a-20261207-054530) ran into one header
    lines = [f"best trial (by val nRMSE): {ra} = {c['best'][ra]['run_id']}   {rb} = {c['best'][rb]['run_id']}",
             f"{'metric':<18}{ra:>{w}}{rb:>{w}}{'Δ (B−A)':>12}{'Δ%':>9}  verdict"]
    for m in c["metrics"]:
        lines.append(f"{m['metric']:<18}{_f(m[ra]):>{w}}{_f(m[rb]):>{w}}{_f(m['delta']):>12}"
                     f"{_f(m['relative'], True):>9}  {m['verdict']}")
    lines += [_interval_line(m) for m in c["metrics"] if "interval" in m]
    lines.append(POINT_NOTE)
    if c["other_data"]:
        lines.append(f"WARNING: {OTHER_DATA}")
    if c["data_note"]:
        lines.append(f"NOTE: {c['data_note']}")
    lines += [f"baselines (test nRMSE, {r}'s data): {_baseline_line(c, r)}" for r in (ra, rb)]
    lines.append(f"{'gate_pass':<18}{_f(c['best'][ra]['gate_pass']):>{w}}{_f(c['best'][rb]['gate_pass']):>{w}}")
    lines.append("gate_reasons:")  # sentences: one line per round, never squeezed into a column
    lines += [f"  {r}: {_f(c['best'][r]['gate_reasons'])}" for r in (ra, rb)]
    for r in (ra, rb):
        lines.append(f"{r}: " + ", ".join(f"{k} {_f(v)}" for k, v in c["stats"][r].items()))
    groups = diff_groups(c["config_diff"], ra, rb)
    if groups:
        lines.append(f"config differences of the best trials ({ra} → {rb}):")
        for keys, a, b in groups[:MAX_TEXT_DIFFS]:
            more = f" (+{len(keys) - 1} with the same change: {', '.join(keys[1:])})" if len(keys) > 1 else ""
            lines.append(f"  {keys[0]}: {_v(a)} → {_v(b)}{more}")
        if len(groups) > MAX_TEXT_DIFFS:
            lines.append(f"  … {len(groups) - MAX_TEXT_DIFFS} more in the HTML comparison")
    return "\n".join(lines)


MAX_TEXT_DIFFS = 20
POINT_NOTE = ("the other rows' verdicts compare the two figures alone: no per-sample record gives them an "
              "interval")


def _interval_line(m: dict[str, Any]) -> str:
    """One line on a paired metric's interval: what the verdict read, or why there is none."""
    if m["interval"] is None:
        return f"Δ {m['metric']}: no interval, {m['interval_note']}"
    lo, hi = m["interval"]
    text = (f"Δ {m['metric']} {CONFIDENCE:.0%} interval {lo:+.4f}…{hi:+.4f} over {m['n_samples']} paired test "
            f"samples")
    if m["interval_note"]:
        text = f"{text}; {m['interval_note']}"
    if m["n_samples"] < MIN_SAMPLES:
        return text
    return f"{text} (test-sample noise only; training seeds move a trial as much: promotion.seeds=N)"


def _v(v: Any) -> str:
    """A config value for the text summary: floats to 4 significant digits, the rest as written."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def diff_groups(config_diff: list[dict[str, Any]], ra: str, rb: str) -> list[tuple[list[str], Any, Any]]:
    """Config differences with the same change (same value in each round) as one entry, in first-key order:
    the operator, encoder, decoder and diffusion widths that follow one searched width are one change."""
    groups: dict[tuple[str, str], tuple[list[str], Any, Any]] = {}
    for d in config_diff:
        sig = (repr(d[ra]), repr(d[rb]))
        if sig in groups:
            groups[sig][0].append(d["key"])
        else:
            groups[sig] = ([d["key"]], d[ra], d[rb])
    return list(groups.values())


def write_compare_html(c: dict[str, Any], out: Path) -> Path:
    e = html.escape
    ra, rb = c["rounds"]
    rows = "".join(f"<tr><td class=txt>{e(m['metric'])}</td><td>{_f(m[ra])}</td><td>{_f(m[rb])}</td>"
                   f"<td>{_f(m['delta'])}</td><td>{_f(m['relative'], True)}</td><td class=txt>{e(m['verdict'])}</td></tr>"
                   for m in c["metrics"])
    text = "".join(f"<tr><td class=txt>{e(k)}</td><td class=txt>{e(_f(c['best'][ra][k]))}</td>"
                   f"<td class=txt>{e(_f(c['best'][rb][k]))}</td></tr>" for k in c["best"][ra])
    stats = "".join(f"<tr><td class=txt>{e(k)}</td><td>{_f(c['stats'][ra][k])}</td><td>{_f(c['stats'][rb][k])}</td></tr>"
                    for k in c["stats"][ra])
    intervals = "".join(f"<li>{e(_interval_line(m))}</li>" for m in c["metrics"] if "interval" in m)
    intervals += f"<li>{e(POINT_NOTE)}</li>"
    warn = f'<p id="compare-other-data"><b>Warning:</b> {e(OTHER_DATA)}</p>' if c["other_data"] else ""
    if c["data_note"]:
        warn += f'<p id="compare-data-note"><b>Note:</b> {e(c["data_note"])}</p>'
    names = list(dict.fromkeys([*c["baselines"][ra], *c["baselines"][rb]]))
    bases = "".join(f"<tr><td class=txt>{e(n)}</td><td>{_f(c['baselines'][ra].get(n))}</td>"
                    f"<td>{_f(c['baselines'][rb].get(n))}</td></tr>" for n in names) or \
        "<tr><td class=txt colspan=3>no baseline rows on the leaderboard (baselines=false)</td></tr>"
    diff = "".join(f"<tr><td class=txt>{e(d['key'])}</td><td class=txt>{e(str(d[ra]))}</td>"
                   f"<td class=txt>{e(str(d[rb]))}</td></tr>" for d in c["config_diff"]) or \
        "<tr><td class=txt colspan=3>no differences recorded (config_json missing or identical)</td></tr>"
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>UPS Sweeps: {e(ra)} vs {e(rb)}</title><style>{CSS}</style></head><body>
<h1>Best trials: {e(ra)} vs {e(rb)}</h1>
<h2>Metrics (Δ = {e(rb)} − {e(ra)})</h2><table id="compare-metrics"><thead><tr><th>metric</th><th>{e(ra)}</th>
<th>{e(rb)}</th><th>Δ</th><th>Δ%</th><th>verdict</th></tr></thead><tbody>{rows}</tbody></table>
<ul id="compare-intervals">{intervals}</ul>{warn}
<h2>Baselines (test nRMSE on each best trial's data)</h2><table id="compare-baselines"><thead><tr><th>baseline</th>
<th>{e(ra)}</th><th>{e(rb)}</th></tr></thead><tbody>{bases}</tbody></table>
<h2>Best trials</h2><table><thead><tr><th>field</th><th>{e(ra)}</th><th>{e(rb)}</th></tr></thead><tbody>{text}</tbody></table>
<h2>Rounds</h2><table><thead><tr><th></th><th>{e(ra)}</th><th>{e(rb)}</th></tr></thead><tbody>{stats}</tbody></table>
<h2>Config differences of the best trials</h2><table><thead><tr><th>key</th><th>{e(ra)}</th><th>{e(rb)}</th></tr>
</thead><tbody>{diff}</tbody></table></body></html>"""
    return write_text_atomic(out, page)


def compare_main(round_a: str, round_b: str, leaderboard: Path, out: Path | None) -> Path:
    lb = load_leaderboard(leaderboard)
    c = compare_rounds(lb, round_a, round_b, source=f"leaderboard '{leaderboard}'")
    print(format_text(c))
    out = out or leaderboard.parent / f"compare_{round_a}_vs_{round_b}.html"
    path = write_compare_html(c, out)
    print(f"comparison: {path}")
    return path
