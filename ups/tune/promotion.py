"""Promotion after a round: small-eval gates → full-eval of the top trials → champion record.

* small-eval: every completed trial's final eval (``ups.train.train``'s last report) against the round's
  baseline, i.e. its reference trial (fallback: the ``fno`` baseline row, configurable): nRMSE better by
  ≥ margin, conservation gap ≤ 1.0×, BC violation ≤ 1.0×, ECE ≤ 1.25× (``gates.small_eval_gates``).
* full-eval: the top ``promotion.top_k`` passing trials, on ``val_nrmse`` (or the top ones regardless when
  ``promotion.force``) are re-evaluated from their checkpoint on the full test split with TTC
  (``ups.eval.evaluate``); each gets its own leaderboard row (``kind=full_eval``).
* seeds (``promotion.seeds=N``, off by default): each promoted configuration is first retrained with
  training seeds base+1 … base+N (``seed_points``, run by the launcher as a second Tune experiment
  ``seeds-<experiment>``); every retrain gets its own full-eval, and the champion is chosen on the mean
  score over the N+1 seeds (``seed_mean_candidates``).  A single-seed winner is partly the luck of its
  seed (benchmarks/search_efficiency.py --reseed measures how much); a seed that diverges or fails
  scores +inf, so a configuration that is not reliable cannot win.
* champion: the best full-eval (``nrmse_ttc``, else ``nrmse``; the seed mean when seeds are on) replaces
  ``reports/champion.json`` if it beats the recorded champion on the same data (``data_hash``; a
  candidate on other data never replaces it: pass ``champion=<another path>``); every
  change is appended to its history (``champion_history.jsonl``; ``history_path``).  A seed mean is compared with a seed mean; against a
  single-seed record, each side's own-seed score is compared (``comparable_scores``).  Round C reads the
  champion's config.  A champion also has to beat every baseline (persistence, linear, FNO) scored on the same
  data's full test split (``promotion.beat_baselines``, on by default): a forced promotion of a weak round
  (``promotion.force``) is full-evaluated and kept on the leaderboard, but does not become the champion.
"""
from __future__ import annotations

import json
import math
import shutil
import statistics
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import pandas as pd

from ups.config import ConfigError, apply_overrides, config_from_dict
from ups.leaderboard import (EVAL_COLUMNS, REFERENCE_REASON, finite_or_none, has_tag, read_leaderboard,
                             selection_key, set_values, trial_standing, update_column, upsert_rows)
from ups.outputs import write_text_atomic
from ups.tune.gates import small_eval_gates
from ups.tune.results import eval_samples_json
from ups.tune.scratch import checkpoint_copy
from ups.tune.space import SearchSpace

SEED_KEY = "training.seed"


def round_baseline(lb: pd.DataFrame, experiment: str, fallback_rows: list[dict[str, Any]],
                   fallback: str) -> tuple[dict[str, Any] | None, str]:
    """The reference trial's eval row, else the named baseline row → (row, description)."""
    rows = lb[(lb["experiment"] == experiment) & (lb["kind"] == "trial")]
    ref = rows[rows["tags"].map(lambda t: has_tag(t, "reference")) & rows["nrmse"].notna()]
    if len(ref):
        return ref.iloc[0].to_dict(), f"reference trial {ref.iloc[0]['trial_id']}"
    for r in fallback_rows:
        if r.get("label") == fallback or r.get("name") == fallback:
            on = f" on {r['scored_on']}" if r.get("scored_on") else ""  # eval.max_samples: the trials' samples
            return dict(r), f"{fallback} baseline{on} (the reference trial has no eval)"
    return None, "none"


def stopped_unfit(row: Mapping[str, Any]) -> str | None:
    """Why a trial cannot be promoted whatever its eval: it errored, or a physics gate stopped it (its eval,
    if any, is of a run the gates rejected).  Trials ASHA/PBT or a sweep budget stopped early are not
    unfit: they simply have no final eval (``small_eval_gates`` says so)."""
    reason, standing = str(row.get("stop_reason") or ""), trial_standing(row)
    if standing == 2:
        return f"trial errored ({reason or 'status=error'}): not promotable"
    if standing == 1:
        return f"stopped by a physics gate ({reason}): not promotable"
    return None


def selection_order(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The run_ids of ``rows`` best first on validation: ``val_nrmse_ttc`` (the final val rollout with TTC, as the
    full-eval that crowns the champion scores the test split) when every row has it, else ``val_nrmse``: the test
    nRMSE does not rank the trials that passed.  (The small-eval gates before it, and the champion's crowning after
    it, do read test figures: docs/SWEEPS.md, "What reads the test split".)  When a row has no validation figure
    (written by other tools) all are ordered on the test ``nrmse``, as ``ups.reports.sources.best_trial`` does."""
    key = selection_key(rows)
    return [str(r["run_id"]) for r in sorted(rows, key=lambda r: _or_inf(r.get(key)))]


def force_fill(lb: pd.DataFrame, experiment: str, chosen: list[str], top_k: int) -> list[str]:
    """``promotion.force``: ``chosen`` (the trials that passed) topped up to ``top_k`` with the experiment's
    best trials (``selection_order``) that have an eval, gates or not; never an errored or physics-gate-stopped
    trial."""
    done = lb[(lb["experiment"] == experiment) & (lb["kind"] == "trial") & lb["nrmse"].notna()]
    fit = [r for r in done.to_dict("records") if not stopped_unfit(r) and r["run_id"] not in chosen]
    return list(chosen) + selection_order(fit)[: max(0, top_k - len(chosen))]


def _gate_text(desc: str, ok: bool, reasons: list[str]) -> str:
    if not reasons:
        return f"vs {desc}: all gates passed"
    return f"vs {desc}: " + ("all applied gates passed; " if ok else "") + "; ".join(reasons)


def apply_small_eval(leaderboard: Path, experiment: str, cfg: Any, baseline_rows: list[dict[str, Any]]) -> list[str]:
    """Write gate_pass / gate_reasons for this experiment's trials; returns passing run_ids (best first, on
    validation: ``selection_order``).  An errored or physics-gate-stopped trial fails; the champion's rows keep
    ``promotion=champion``."""
    lb = read_leaderboard(leaderboard)
    base, desc = round_baseline(lb, experiment, baseline_rows, cfg.fallback)
    rows = lb[(lb["experiment"] == experiment) & (lb["kind"] == "trial")]
    updates, passing = [], []
    for _, r in rows.iterrows():
        row = r.to_dict()
        unfit = stopped_unfit(row)
        if base is not None and base.get("run_id") == row["run_id"]:
            ok, reasons = False, [REFERENCE_REASON]
        elif unfit:
            ok, reasons = False, [unfit]
        else:
            ok, reasons = small_eval_gates(row, base, cfg)
        row["gate_pass"] = bool(ok)
        row["gate_reasons"] = _gate_text(desc, ok, reasons)
        if ok:
            if row.get("promotion") != "champion":  # a re-run promotion (resume=true) keeps the champion's label
                row["promotion"] = "small_eval"
            passing.append(row)
        updates.append(row)
    if updates:
        upsert_rows(leaderboard, updates)
    return selection_order(passing)


def _or_inf(v: Any) -> float:
    """A metric cell as a float, +inf when missing (None/NaN/blank); 0.0 stays 0.0."""
    f = finite_or_none(v)
    return math.inf if f is None else f


@contextmanager
def local_checkpoint(path: str, filesystem: Any = None) -> Iterator[Path]:
    """A local checkpoint.pt for a Tune checkpoint path, for the length of a ``with`` block: through a
    filesystem (S3 storage) it is a temporary download, deleted when the block ends."""
    p = Path(path)
    if not str(path).startswith("s3://") and filesystem is None and p.exists():
        yield p / "checkpoint.pt" if p.is_dir() else p
        return
    from ray.tune import Checkpoint

    local = checkpoint_copy(Checkpoint(path, filesystem=filesystem))
    try:
        yield local / "checkpoint.pt"
    finally:
        shutil.rmtree(local, ignore_errors=True)


def checkpoint_uri(path: str, local: Path, filesystem: Any = None) -> str:
    """What the leaderboard and champion.json record for a checkpoint: the local checkpoint.pt when it is
    the trial's own file, else where it lives (``s3://bucket/…/checkpoint_N``; the folder of a pyarrow
    S3 filesystem's bucket-relative path).  Never ``local_checkpoint``'s download, a temp folder deleted
    after the eval.  ``local_checkpoint(uri)`` downloads it again."""
    text = str(path)
    if text.startswith("s3://"):
        return text
    if filesystem is None:
        return str(local)
    if getattr(filesystem, "type_name", "") == "s3":
        return "s3://" + text.lstrip("/")
    return text


def full_eval(leaderboard: Path, run_ids: list[str], data: Any, *, filesystem: Any = None,
              round_name: str = "", cost_per_gpu_hour: float = 0.0,
              check_stop: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Re-evaluate checkpoints on the full test split with TTC; one ``kind=full_eval`` row each.  Its
    ``wall_clock``/``gpu_hours``/``est_cost`` are the evaluation's own (one whole GPU when it ran on CUDA):
    the training it evaluates is costed on the trial's row (``source_run_id``), so summing the column
    counts each once.  ``check_stop`` runs after each evaluation (``StopSignals.check``: a stop whose interrupt
    was lost ends the promotion there, before any row is written)."""
    import time

    from ups.eval import eval_device, evaluate
    from ups.train.checkpoint import CheckpointError, load_checkpoint
    from ups.train.trainer import gpu_memory, reset_gpu_peak

    lb = read_leaderboard(leaderboard).set_index("run_id", drop=False)
    out, kept = [], []
    for rid in run_ids:
        row = lb.loc[rid].to_dict()
        if not row.get("checkpoint") or (isinstance(row["checkpoint"], float)):
            continue
        if (done := recorded_full_eval(lb, rid, getattr(data, "data_hash", ""), filesystem)) is not None:
            kept.append(done)  # a resume of a promoted sweep: this checkpoint was evaluated on this split already
            continue
        try:
            with local_checkpoint(str(row["checkpoint"]), filesystem) as ckpt:
                uri = checkpoint_uri(str(row["checkpoint"]), ckpt, filesystem)
                model, cfg, _ = load_checkpoint(ckpt)
        except FileNotFoundError as e:  # not the round's end: the other trials' evals, the report still come
            _say(f"{rid}: no full-eval, its checkpoint {row['checkpoint']} is not there ({e}). Fix: if the sweep's "
                 f"folder moved, resume=true with storage_path= where it is now (the rows follow it)")
            continue
        except CheckpointError as e:  # empty/truncated (disk full, a killed write): the other trials still come
            _say(f"{rid}: no full-eval, its checkpoint {row['checkpoint']} cannot be loaded: {e}")
            continue
        cfg = apply_overrides(cfg, {"eval.max_samples": -1, "ttc.enabled": True}, source="full-eval")
        device = eval_device(cfg)
        reset_gpu_peak(device)  # this evaluation's own peak, not the previous one's (CUDA only)
        t0 = time.perf_counter()
        metrics = evaluate(model, cfg, data, split="test")
        wall = time.perf_counter() - t0
        if check_stop is not None:
            check_stop()
        gpu_h = wall / 3600.0 if device.type == "cuda" else 0.0
        full = {k: row.get(k) for k in ("round", "experiment", "trial_id", "config_hash", "config_json",
                                        "params", "tags", "pbt_schedule") if k in row}
        full.update({"wall_clock": round(wall, 2), "gpu_hours": round(gpu_h, 5),
                     "est_cost": round(gpu_h * cost_per_gpu_hour, 4), **gpu_memory(device)})
        full.update({k: metrics.get(k) for k in EVAL_COLUMNS})
        full.update({"run_id": f"{rid}-full", "kind": "full_eval", "label": f"full-eval of {rid}",
                     "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "status": "completed", "stop_reason": "full-eval (test split, TTC on)",
                     "promotion": "full_eval", "checkpoint": uri, "source_run_id": rid,
                     "data_hash": getattr(data, "data_hash", ""), "eval_samples_json": eval_samples_json(metrics)})
        out.append(full)
    if out:
        upsert_rows(leaderboard, out)
    if out or kept:  # the kept ones too: a resume's small-eval had set their trials back to small_eval
        update_column(leaderboard, [r["source_run_id"] for r in [*out, *kept]], "promotion", "full_eval")
    if kept:
        _say(f"full-eval of {', '.join(r['source_run_id'] for r in kept)}: on the leaderboard already, from this "
             "checkpoint on this test split (kept, not evaluated again)")
    done = {r["source_run_id"]: r for r in [*out, *kept]}
    return [done[rid] for rid in run_ids if rid in done]


def recorded_full_eval(lb: pd.DataFrame, run_id: str, data_hash: str, filesystem: Any = None) -> dict[str, Any] | None:
    """``run_id``'s full-eval row when the leaderboard (indexed by run_id) holds one that evaluated the checkpoint
    the trial's row names now on data ``data_hash`` with finite figures; else None.  A resumed sweep whose
    promotion had finished (or was cut after its rows were written) keeps it rather than paying for it again;
    one whose folder moved (``storage_path=`` of a resume) has its checkpoint elsewhere and is evaluated anew."""
    fid = f"{run_id}-full"
    if fid not in lb.index:
        return None
    # not a seed mean an earlier promotion wrote into it: seed_mean_candidates adds this run's again, from its score
    full = {k: v for k, v in lb.loc[fid].to_dict().items() if not (isinstance(v, float) and math.isnan(v))
            and k not in ("seed_mean", "seed_scores", "seed_run_ids")}
    src = str(lb.loc[run_id, "checkpoint"])
    here = checkpoint_uri(src, Path(src), filesystem)
    if (full.get("kind") != "full_eval" or str(full.get("data_hash", "")) != str(data_hash)
            or not str(full.get("checkpoint", "")).startswith(here)
            or finite_or_none(full.get("nrmse_ttc", full.get("nrmse"))) is None):
        return None
    return full


def seed_points(leaderboard: Path, run_ids: list[str], space: SearchSpace, base_seed: int,
                n: int) -> list[dict[str, Any]]:
    """Searcher points (encoded, as Tune hands them to the trainable) that retrain each promoted trial's
    searched values with training seeds ``base_seed + 1 … base_seed + n``, in promotion order."""
    lb = read_leaderboard(leaderboard).set_index("run_id", drop=False)
    points = []
    for rid in run_ids:
        values = json.loads(lb.loc[rid, "sampled_json"])
        point = {k: p.encode(values[k]) for k, p in space.params.items()}
        points += [{**point, SEED_KEY: base_seed + i} for i in range(1, n + 1)]
    return points


def seed_groups(leaderboard: Path, run_ids: list[str], seed_experiment: str, space: SearchSpace) -> dict[str, list[str]]:
    """Promoted run_id → run_ids of its seed retrains (matched on the searched values)."""
    lb = read_leaderboard(leaderboard)

    def key(sampled: str) -> str:
        values = json.loads(sampled)
        return json.dumps({k: values.get(k) for k in space.params}, sort_keys=True, default=str)

    retrains = lb[(lb["experiment"] == seed_experiment) & (lb["kind"] == "trial")]
    by_key: dict[str, list[str]] = {}
    for sampled, rid in zip(retrains["sampled_json"], retrains["run_id"]):
        by_key.setdefault(key(sampled), []).append(str(rid))
    src = lb.set_index("run_id", drop=False)
    return {rid: sorted(by_key.get(key(src.loc[rid, "sampled_json"]), [])) for rid in run_ids}


def pass_groups(leaderboard: Path, passing: list[str], experiment: str, space: SearchSpace,
                top_k: int) -> dict[str, list[str]]:
    """A grid sweep whose passes train every point again with the next training seeds (``grid_seed_passes``):
    the passes are each configuration's seeds, as ``promotion.seeds`` retrains are.  Returns the ``top_k`` best
    configurations among the ``passing`` trials, ranked on the mean over their passes' trials of the validation
    figure ``selection_order`` reads (a seed that failed counts as +inf), each as its best passing trial →
    the run_ids of the configuration's other passes.  Ranking on one seed crowned a configuration for its
    luckiest seed."""
    lb = read_leaderboard(leaderboard)
    rows = lb[(lb["experiment"] == experiment) & (lb["kind"] == "trial")].to_dict("records")
    searched = [k for k in space.params if k != SEED_KEY]

    def config_of(row: Mapping[str, Any]) -> str:
        values = json.loads(row.get("sampled_json") or "{}")
        return json.dumps({k: values.get(k) for k in searched}, sort_keys=True, default=str)

    members: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        members.setdefault(config_of(r), []).append(r)
    key = selection_key(rows)
    by_id = {str(r["run_id"]): r for r in rows}
    best: dict[str, str] = {}  # configuration → its best passing trial (passing is best first)
    for rid in passing:
        best.setdefault(config_of(by_id[rid]), rid)
    mean = {c: statistics.fmean(_or_inf(r.get(key)) if stopped_unfit(r) is None else math.inf for r in members[c])
            for c in best}
    ranked = sorted(best, key=lambda c: mean[c])[:top_k]
    return {best[c]: sorted(str(r["run_id"]) for r in members[c] if str(r["run_id"]) != best[c]) for c in ranked}


def seed_mean_candidates(fulls: list[dict[str, Any]], groups: dict[str, list[str]], n: int) -> list[dict[str, Any]]:
    """Each promoted trial's full-eval row with ``seed_scores`` (its own seed first) and ``seed_mean``.
    A seed without a full-eval (diverged, gate-stopped, crashed, missing) scores +inf."""
    by_source = {r["source_run_id"]: r for r in fulls}
    out = []
    for rid, retrains in groups.items():
        if rid not in by_source:
            continue
        scores = [score(by_source[r]) if r in by_source else math.inf for r in [rid, *retrains]]
        scores += [math.inf] * (n + 1 - len(scores))
        mean = statistics.fmean(scores) if all(map(math.isfinite, scores)) else math.inf
        out.append({**by_source[rid], "seed_mean": mean, "seed_scores": json.dumps([round(v, 6) for v in scores]),
                    "seed_run_ids": ";".join([rid, *retrains])})
    return out


def score(row: Mapping[str, Any]) -> float:
    """Champion score: the seed mean when the row has one (+inf if a seed failed), else nRMSE with TTC,
    else nRMSE, else a champion record's own ``score`` (a hand-written record need not carry the nRMSEs)."""
    if has_seed_mean(row):
        return float(row["seed_mean"])
    v = finite_or_none(row.get("nrmse_ttc"))
    v = v if v is not None else finite_or_none(row.get("nrmse"))
    return v if v is not None else _or_inf(row.get("score"))


def has_seed_mean(row: Mapping[str, Any]) -> bool:
    return row.get("seed_mean") is not None and str(row.get("seed_mean")) not in ("", "nan")


def own_seed_score(row: Mapping[str, Any]) -> float:
    """The score of the run on its own training seed: the first of ``seed_scores``, else ``score``."""
    seeds = row.get("seed_scores")
    if seeds:
        first = (json.loads(seeds) if isinstance(seeds, str) else seeds)[0]
        return float(first) if first is not None else math.inf
    return score(row)


_BASIS = {"seed_mean": "means over training seeds", "own_seed": "each at its own training seed"}


def comparable_scores(current: Mapping[str, Any], best: Mapping[str, Any]) -> tuple[float, float, str]:
    """(current, candidate, basis): seed means when both have one, else each run's own-seed score, so a
    seed mean is never weighed against a single (selected, hence optimistic) seed."""
    if has_seed_mean(current) and has_seed_mean(best):
        return score(current), score(best), "seed_mean"
    return own_seed_score(current), own_seed_score(best), "own_seed"


CHAMPION_KEYS = ("run_id", "score", "checkpoint", "config", "data_hash")  # every record a promotion writes has them


def read_champion(path: str | Path) -> dict[str, Any] | None:
    """The champion record (None: no champion yet); a file that is not one is a ConfigError with the fix."""
    p = Path(path)
    if not p.exists():
        return None
    if p.is_dir():  # champion=reports/ (the folder): read_text raised IsADirectoryError, a raw traceback
        raise ConfigError(f"champion={p} is a folder, not a champion record. Fix: pass the file, e.g. "
                          f"champion={p / 'champion.json'}")
    try:
        rec = json.loads(p.read_text())
        why = None if isinstance(rec, dict) else f"a JSON {type(rec).__name__}, not an object"
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        why = f"not valid JSON: {e}"
    if why is None:  # what promotion compares with (score, data_hash) and rounds C/D start from (config)
        missing = [k for k in CHAMPION_KEYS if rec.get(k) is None or rec.get(k) == ""]
        if not missing and finite_or_none(rec.get("score")) is None:
            missing = ["score (a number)"]
        if not missing:  # a hand-written "score": "0.1" passes, as the number (round C/D print it with :.4g)
            return {**rec, "score": finite_or_none(rec["score"])}
        why = f"missing {', '.join(repr(k) for k in missing)} (a promotion writes {', '.join(CHAMPION_KEYS)})"
    history = history_path(p)
    restore = (f"restore the last champion from {history} (tail -n 1 {history} > {p}), or " if history.exists()
               else "")
    raise ConfigError(f"{p}: champion record is {why}. Fix: {restore}move it aside (mv {p} {p}.bak) so that a round "
                      f"crowns a new champion, or pass champion=<another champion.json>")


def _say(msg: str) -> None:
    print(f"[ups sweep] promotion: {msg}", flush=True)


def candidate_config(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """A full-eval row's config (its ``config_json``), None when blank/NaN (after a CSV read) or not JSON."""
    text = row.get("config_json")
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError:
        return None
    return cfg if isinstance(cfg, dict) else None


def _with_config(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidates that carry a config (round C reads the champion's); one line for each that does not."""
    out = []
    for c in candidates:
        if candidate_config(c) is None:
            _say(f"{c.get('source_run_id', c.get('run_id'))} has no config_json on the leaderboard (blank or not "
                 f"JSON: its config could not be recorded), so it cannot be the champion. Fix: re-run that "
                 f"configuration so its row carries config_json")
        else:
            out.append(c)
    return out


def _label_champion(leaderboard: Path, record: Mapping[str, Any] | None, path: Path | None = None) -> None:
    """Mark the champion's trial and full-eval rows ``promotion=champion`` (a re-run promotion relabels them); with
    the record's ``path``, the rows of the champions its history names before it that still say champion are
    full-evals again (another record's champion, e.g. the full profile's in the same leaderboard, keeps its label)."""
    if record is None or not Path(leaderboard).exists():
        return
    ids = [str(record[k]) for k in ("run_id", "full_eval_run_id") if record.get(k)]
    if path is not None:
        earlier = {str(r[k]) for r in _history(path) for k in ("run_id", "full_eval_run_id") if r.get(k)} - set(ids)
        lb = read_leaderboard(leaderboard)
        stale = lb[lb["run_id"].astype(str).isin(earlier) & (lb["promotion"].astype(str) == "champion")]
        if len(stale):
            set_values(leaderboard, "promotion", {str(r): "full_eval" for r in stale["run_id"]})
    if ids:
        update_column(leaderboard, ids, "promotion", "champion")


def _keep(current: dict[str, Any] | None, leaderboard: Path, path: Path | None = None) -> dict[str, Any] | None:
    """Keep ``current`` (the record in ``path``): label its rows, and make its history end with it (a driver killed
    between the record and its history line left the history naming the champion before, and both labelled)."""
    if current is not None and path is not None:
        _complete_history(path, current)
    _label_champion(leaderboard, current, path)
    return current


def _history(path: Path) -> list[dict[str, Any]]:
    """The records of ``history_path(path)``, skipping lines that are not JSON objects (a hand edit)."""
    out = []
    try:
        lines = history_path(path).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _complete_history(path: Path, record: Mapping[str, Any],
                      keys: Sequence[str] = ("run_id", "full_eval_run_id", "checkpoint")) -> None:
    """Append ``record`` to its history unless the history already ends with it (the same ``keys``; a record that
    follows its checkpoint to a moved sweep folder is a new line)."""
    hist = _history(path)
    if not hist or [str(hist[-1].get(k)) for k in keys] != [str(record.get(k)) for k in keys]:
        with open(history_path(path), "a") as fh:
            fh.write(json.dumps(dict(record), default=str) + "\n")


def update_champion(path: Path, candidates: list[dict[str, Any]], leaderboard: Path,
                    baselines: Sequence[Mapping[str, Any]] = (), *, beat_baselines: bool = True) -> dict[str, Any] | None:
    """Crown the best full-eval if it beats the recorded champion on the same data and every ``baselines`` row
    (persistence, linear, FNO: scored on the same full test split) of that data; with ``beat_baselines=False``
    the baselines are no bar, and only name the FNO ``ups eval`` of the record trains (``baselines_run``).  A
    candidate evaluated on other data (``data_hash``) never replaces the champion: scores on different data do not
    compare.
    Under ``champion.json.lock``: two rounds promoting at once (two terminals, one reports/) take turns, so
    neither crowns its best over a better champion the other has just written."""
    from ups.filelock import exclusive_lock

    with exclusive_lock(Path(str(path) + ".lock")):
        return _crown(Path(path), candidates, leaderboard, baselines, beat_baselines)


def _rows_on_data(baselines: Sequence[Mapping[str, Any]], data_hash: Any) -> list[Mapping[str, Any]]:
    """The baseline rows scored on ``data_hash``'s test split (for a leaderboard frame: ``ups.reports.sources.
    baselines_on``).  Baseline rows carry the hash's first 12 characters (``launcher.baseline_rows``)."""
    want = str(data_hash or "")[:12]
    return [b for b in baselines if str(b.get("data_hash") or "")[:12] == want]


def baseline_bar(baselines: Sequence[Mapping[str, Any]], data_hash: Any) -> tuple[str, float] | None:
    """(name, nRMSE) of the best baseline scored on ``data_hash``'s test split; None when there is none."""
    scored = [(str(b.get("label") or b.get("name")), v) for b in _rows_on_data(baselines, data_hash)
              if (v := finite_or_none(b.get("nrmse"))) is not None]
    return min(scored, key=lambda t: t[1]) if scored else None


def baseline_settings(baselines: Sequence[Mapping[str, Any]], data_hash: Any) -> dict[str, Any] | None:
    """``{"fno_budget_s", "fno_steps", "seed"}`` of the baseline rows scored on ``data_hash`` (the sweep's FNO: ``ups
    eval`` of the champion trains it with these, and so finds it cached; ``fno_steps`` 0: trained for the budget),
    None when there are none."""
    for b in _rows_on_data(baselines, data_hash):
        if b.get("fno_budget_s") is not None and b.get("seed") is not None:
            steps = finite_or_none(b.get("fno_steps"))  # rows from before the sweeps took fno_steps have none
            return {"fno_budget_s": float(b["fno_budget_s"]), "fno_steps": int(steps or 0), "seed": int(b["seed"])}
    return None


def _crown(path: Path, candidates: list[dict[str, Any]], leaderboard: Path,
           baselines: Sequence[Mapping[str, Any]] = (), beat_baselines: bool = True) -> dict[str, Any] | None:
    current = _follow_checkpoint(path, read_champion(path), candidates)
    candidates = _with_config(candidates)
    if not candidates:
        return _keep(current, leaderboard, path)
    best = min(candidates, key=score)
    if not math.isfinite(score(best)):  # every candidate's score: NaN/inf, or a training seed that failed
        kept = f"kept the champion {current.get('run_id')} in {path}" if current else "no champion crowned"
        seeds = f" (scores over training seeds {best.get('seed_scores')})" if has_seed_mean(best) else ""
        _say(f"{kept}: no candidate has a finite score; the best, {best.get('source_run_id')}, scored "
             f"{score(best)}{seeds}. Fix: see its rows' stop_reason and each seed's error.txt; a seed that failed "
             f"counts as inf")
        return _keep(current, leaderboard, path)
    bar = baseline_bar(baselines, best.get("data_hash")) if beat_baselines else None
    if bar is not None and score(best) >= bar[1]:
        kept = f"kept the champion {current.get('run_id')}" if current else "no champion crowned"
        _say(f"{kept}: the best candidate {best.get('source_run_id')} scored {score(best):.4g} on the full test "
             f"split, no better than the {bar[0]} baseline's {bar[1]:.4g} on the same data; a champion has to "
             f"beat every baseline. Fix: train longer or search further (its row and checkpoint stay on the "
             f"leaderboard), or promotion.beat_baselines=false to crown it anyway")
        return _keep(current, leaderboard, path)
    basis, cur, new = None, math.inf, math.inf  # compared_on stays None for the first champion
    if current is not None:
        if current.get("data_hash") != best.get("data_hash"):
            _say(f"kept the champion {current.get('run_id')} in {path}: candidate {best.get('source_run_id')} was "
                 f"evaluated on other data (data_hash {best.get('data_hash')!r}, champion's "
                 f"{current.get('data_hash')!r}: another profile, data.* setting or data file, or the data "
                 f"generator changed since it was crowned: ups.data.cache.DATA_VERSION), so their scores do not "
                 f"compare. Fix: pass champion=<another path> for this data (e.g. one per profile)")
            return _keep(current, leaderboard, path)
        cur, new, basis = comparable_scores(current, best)
        if cur <= new:
            if str(current.get("run_id")) == str(best.get("source_run_id")):  # a re-run promotion (resume=true)
                _say(f"kept the champion {current.get('run_id')} in {path}: the best candidate is the champion "
                     f"itself ({new:.4g}; recorded {cur:.4g})")
            else:
                _say(f"kept the champion {current.get('run_id')} in {path}: it scored {cur:.4g}, the best candidate "
                     f"{best.get('source_run_id')} {new:.4g} ({_BASIS[basis]})")
            return _keep(current, leaderboard, path)
    record = {"run_id": best["source_run_id"], "full_eval_run_id": best["run_id"], "round": best.get("round"),
              "experiment": best.get("experiment"), "nrmse": finite_or_none(best.get("nrmse")),
              "nrmse_ttc": finite_or_none(best.get("nrmse_ttc")), "score": score(best), "checkpoint": best["checkpoint"],
              "config": candidate_config(best),
              "data_hash": best.get("data_hash"), "replaced": current.get("run_id") if current else None,
              "compared_on": basis, "baseline_bar": {"name": bar[0], "nrmse": bar[1]} if bar else None,
              "leaderboard": str(Path(leaderboard).expanduser().resolve()),
              "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if fno := baseline_settings(baselines, best.get("data_hash")):  # ups eval of the record scores the same FNO
        record["baselines_run"] = fno
    schedule = best.get("pbt_schedule")
    if isinstance(schedule, str) and schedule:  # trained by PBT: its config is the last of a schedule
        record["pbt_schedule"] = json.loads(schedule)
    if has_seed_mean(best):  # chosen on the mean over training seeds
        record.update({"seed_mean": best["seed_mean"], "seed_scores": json.loads(best["seed_scores"]),
                       "seed_run_ids": best["seed_run_ids"].split(";")})
    _write_record(path, record)
    won = (f"{new:.4g} against {current.get('run_id')}'s {cur:.4g} ({_BASIS[basis]})" if current is not None
           else "the first champion in this file")
    beats = f" below the {bar[0]} baseline's {bar[1]:.4g}" if bar else ""
    _say(f"crowned {record['run_id']} in {path}: {won}; its score {record['score']:.4g}{beats}")
    if current is not None and Path(leaderboard).exists():  # dethroned: its rows are full-evals again
        update_column(leaderboard, [str(current[k]) for k in ("run_id", "full_eval_run_id") if current.get(k)],
                      "promotion", "full_eval")
    _label_champion(leaderboard, record, path)  # and any earlier champion of this file a kill left labelled
    return record


def history_path(record: Path) -> Path:
    """Where promotion appends every champion record it writes: ``<record's stem>_history.jsonl`` beside ``record``
    (``champion_history.jsonl`` for ``champion.json``, ``champion_full_history.jsonl`` for the full profile's
    ``champion_full.json``: one history per record, so ``tail -n 1`` of it restores that record and no other)."""
    record = Path(record)
    return record.with_name(f"{record.stem}_history.jsonl")


def _write_record(path: Path, record: Mapping[str, Any]) -> None:
    """A line of the history (``history_path``), then champion.json (atomically): a driver killed in between leaves
    a history one record ahead, which the next promotion's ``_keep`` reads as it is, never a champion the history
    lacks (``tail -n 1`` of the history restores the record)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _complete_history(path, record)  # a re-run after such a kill does not write the line twice
    write_text_atomic(path, json.dumps(record, indent=2, default=str))


def _follow_checkpoint(path: Path, current: dict[str, Any] | None,
                       candidates: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The champion full-evaluated again from another checkpoint path (its sweep's folder moved, then
    ``resume=true storage_path=<where it is now>``: the leaderboard rows follow it): the record follows too.
    It kept the old path, so ``ups export champion`` and the report's rollout found no checkpoint."""
    if current is None:
        return None
    own = [c for c in candidates if c.get("source_run_id") == current.get("run_id") and c.get("checkpoint")
           and c.get("data_hash") == current.get("data_hash")]
    if not own or str(own[0]["checkpoint"]) == str(current.get("checkpoint")):
        return current
    record = {**current, "checkpoint": own[0]["checkpoint"]}
    _write_record(path, record)
    _say(f"champion {current.get('run_id')}: its checkpoint is now {record['checkpoint']} (was "
         f"{current.get('checkpoint')}), recorded in {path}")
    return record


def champion_record(path: str | Path, round_name: str) -> dict[str, Any]:
    """The champion record with a valid config (rounds C and D start from it), or a clear error with the fix."""
    rec = read_champion(path)
    if rec is None:
        raise ConfigError(f"{round_name}: no champion yet ({Path(path)} not found). Fix: run round_a or round_b "
                          f"first (their promotion step writes the champion when a trial passes the small-eval gates "
                          f"and beats every baseline; promotion.force=true promotion.beat_baselines=false crowns the "
                          f"top trial regardless), or pass "
                          f"champion=<path/to/champion.json>")
    if not rec.get("config"):
        raise ConfigError(f"{path}: champion record has no 'config'. Fix: re-run a round to promote a champion")
    if not isinstance(rec["config"], dict):  # a hand edit ("config": "dim32") read as "unknown config key 'dim32'"
        raise ConfigError(f"{path}: the champion record's 'config' is {rec['config']!r}, not the config mapping a "
                          f"promotion writes. Fix: put back the record's config (its history: "
                          f"{history_path(Path(path))}), or re-run a round to promote a champion")
    config_from_dict(rec["config"], source=f"{path} config")  # validates
    return rec
