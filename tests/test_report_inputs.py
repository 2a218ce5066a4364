"""Report inputs without Ray: bad input refused with the fix, shared folders never clobbered, crash-safe
writes, importance and Pareto logic, comparison deltas."""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ups.reports.html as report_html
from ups.config import ConfigError
from ups.leaderboard import upsert_rows
from ups.reports.cli import main as report_main
from ups.reports.compare import compare_rounds
from ups.reports.experiment import ExperimentResults, TrialRecord
from ups.reports.html import round_importances
from ups.reports.importance import param_importance
from ups.reports.plots import (PlotSkipped, curve_segments, gate_counts, pareto_front, plot_gates,
                               plot_importance, plot_learning_curves)
from ups.reports.sources import load_leaderboard


def drawn_figures(monkeypatch) -> list:
    """The figures the report's plot functions save from now on, in order (each is saved as usual too)."""
    from matplotlib.figure import Figure

    seen: list = []
    real_save = Figure.savefig

    def keep(fig, *a, **k):
        seen.append(fig)
        return real_save(fig, *a, **k)

    monkeypatch.setattr(Figure, "savefig", keep)
    return seen


def _rows(round_name: str, n: int, seed: int, failed: int | None = None) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        lr = float(10 ** rng.uniform(-4, -2))
        width = int(rng.choice([16, 32]))
        nrmse = 0.05 + 0.1 * abs(np.log10(lr) + 3) + 0.001 * rng.normal()
        bad = i == failed
        rows.append({"run_id": f"{round_name}-{i}", "timestamp": f"2026-11-22T20:{10 + 10 * seed + i:02d}:00", "round": round_name,
                     "kind": "trial", "label": f"t{i}", "trial_id": f"{round_name}_{i}",
                     "status": "error" if bad else "completed", "nrmse": None if bad else nrmse,
                     "nrmse_ttc": None if bad else nrmse * 0.95, "params": width * 1000, "wall_clock": 30.0 + i,
                     "gpu_hours": 0.0, "est_cost": 0.0, "gate_pass": (not bad) and i % 2 == 0,
                     "sampled_json": json.dumps({"stages.operator.optimizer.lr": lr, "operator.hidden_dim": width}),
                     "config_json": json.dumps({"stages": {"operator": {"optimizer": {"lr": lr}}},
                                                "operator": {"hidden_dim": width}})})
    return rows


BASELINES = [{"run_id": "baseline-persistence", "kind": "baseline", "label": "persistence", "nrmse": 0.62},
             {"run_id": "baseline-linear", "kind": "baseline", "label": "linear", "nrmse": 0.28}]


@pytest.fixture
def shared_reports(tmp_path) -> Path:
    """A reports/ folder as the sweep engine leaves it: leaderboard, lock, champion record."""
    d = tmp_path / "reports"
    upsert_rows(d / "leaderboard.csv", _rows("round_a", 6, 0, failed=2) + _rows("round_b", 5, 1) + BASELINES)
    (d / "champion.json").write_text(json.dumps({"run_id": "round_a-0", "checkpoint": str(tmp_path / "nope.pt")}))
    return d


def test_report_into_shared_folder_keeps_leaderboard_and_champion(shared_reports) -> None:
    before = (shared_reports / "leaderboard.csv").read_bytes()
    index = report_html.write_report(None, shared_reports / "leaderboard.csv", "round_a", shared_reports)
    assert index == shared_reports / "index.html"
    assert (shared_reports / "leaderboard.csv").read_bytes() == before and (shared_reports / "champion.json").exists()
    page = index.read_text()
    assert page.count('<tr class="failed"') == 1 and "Failed trials (1)" in page
    assert "nope.pt&#x27; does not exist" in page  # the rollout figure says why it is missing
    assert not list(shared_reports.parent.glob(".reports.tmp-*"))


def test_crash_while_rendering_keeps_previous_report(shared_reports, monkeypatch) -> None:
    out = shared_reports / "round_a"
    report_html.write_report(None, shared_reports / "leaderboard.csv", "round_a", out)
    old = (out / "index.html").read_text()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_html, "_page", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        report_html.write_report(None, shared_reports / "leaderboard.csv", "round_b", out)
    assert (out / "index.html").read_text() == old
    assert not list(shared_reports.glob(".round_a.tmp-*"))


def test_bad_inputs_name_file_key_and_fix(shared_reports, tmp_path) -> None:
    lb = shared_reports / "leaderboard.csv"
    with pytest.raises(ConfigError, match=r"leaderboard '.*missing.csv' does not exist\. Fix: run a sweep"):
        report_main([f"leaderboard={tmp_path / 'missing.csv'}"])
    with pytest.raises(ConfigError, match="unknown argument 'experimnt'. Did you mean 'experiment'"):
        report_main([f"leaderboard={lb}", "experimnt=x"])
    with pytest.raises(ConfigError, match="cannot parse argument 'round_a'"):
        report_main(["round_a"])
    with pytest.raises(ConfigError, match="no trials of round 'round_z'.*Rounds present: round_a, round_b"):
        report_main([f"leaderboard={lb}", "round=round_z", f"out={tmp_path / 'z'}"])
    with pytest.raises(ConfigError, match=r"experiment '.*nowhere' is not a directory"):
        report_main([f"leaderboard={lb}", "round=round_a", f"experiment={tmp_path / 'nowhere'}", f"out={tmp_path / 'o'}"])
    (tmp_path / "empty_exp").mkdir()
    with pytest.raises(ConfigError, match="holds no Tune trials"):
        report_main([f"leaderboard={lb}", "round=round_a", f"experiment={tmp_path / 'empty_exp'}", f"out={tmp_path / 'o'}"])
    (tmp_path / "garbage.csv").write_bytes(b"\x00\x01\x02not,a\ncsv")
    with pytest.raises(ConfigError, match="has no 'run_id'/'nrmse' columns"):
        load_leaderboard(tmp_path / "garbage.csv")
    with pytest.raises(ConfigError, match=r"expected two round \(or sweep\) names"):
        report_main(["compare", "round_a", f"leaderboard={lb}"])
    with pytest.raises(ConfigError, match="no trials of a round or sweep named 'round_q'.*latest sweeps: "):
        report_main(["compare", "round_a", "round_q", f"leaderboard={lb}"])
    assert not (tmp_path / "z").exists() and not (tmp_path / "o").exists()


def test_default_round_is_the_most_recent(shared_reports, capsys) -> None:
    assert report_main([f"leaderboard={shared_reports / 'leaderboard.csv'}"]) == 0
    assert "round=round_b" in capsys.readouterr().out and (shared_reports / "round_b" / "index.html").exists()


def test_importance_finds_the_parameter_that_matters() -> None:
    rng = np.random.default_rng(3)
    lr = 10 ** rng.uniform(-4, -2, 24)
    noise = rng.uniform(0, 1, 24)
    df = pd.DataFrame({"lr": lr, "noise": noise, "nrmse": (np.log10(lr) + 3) ** 2 + 0.01 * noise})
    imp, method = param_importance(df, ["lr", "noise"])
    assert method.startswith("Optuna") and imp["lr"] > 0.7 > imp["noise"]
    imp2, method2 = param_importance(df.head(3), ["lr", "noise"])
    assert "Spearman" in method2 and "only 3 finished" in method2 and abs(sum(imp2.values()) - 1) < 1e-9
    assert param_importance(df.assign(lr=1e-3), ["lr"]) == ({}, "none: no parameter varies between finished trials")
    # two finished trials rank every varying parameter |ρ| = 1: equal bars that say nothing, so no figure
    imp3, method3 = param_importance(df.head(2), ["lr", "noise"])
    assert imp3 == {} and "only 2 finished" in method3 and "≥ 3" in method3
    with pytest.raises(PlotSkipped, match="only 2 finished"):
        plot_importance(imp3, method3, Path("unused.png"))


def test_importance_counts_a_derived_copy_once() -> None:
    """Round A records each trial's lr three times (operator, and the diffusion and distillation copies
    derived from it): the importance figure must show one lr, not three bars sharing its importance."""
    rng = np.random.default_rng(5)
    lr, warm = 10 ** rng.uniform(-4, -2, 12), rng.uniform(0, 0.1, 12)
    sampled = [{"stages.operator.optimizer.lr": a, "stages.diff_residual.optimizer.lr": a,
                "stages.consistency_distill.optimizer.lr": a, "stages.operator.warmup_steps_ratio": w,
                "stages.diff_residual.warmup_steps_ratio": w} for a, w in zip(lr, warm)]
    lb = pd.DataFrame({"kind": "trial", "trial_id": [f"t{i}" for i in range(12)],
                       "nrmse": (np.log10(lr) + 3) ** 2 + 0.01 * warm, "config_json": "",
                       "sampled_json": [json.dumps(x) for x in sampled]})
    imp, _ = round_importances(lb)  # no experiment: the group is named by its first key in schema order
    assert set(imp) == {"stages.operator.optimizer.lr (+2 with the same values)",
                        "stages.operator.warmup_steps_ratio (+1 with the same values)"}, imp
    exp = ExperimentResults("x", [TrialRecord(f"t{i}", "TERMINATED", {"stages.operator.optimizer.lr": a,
                                                                      "stages.operator.warmup_steps_ratio": w},
                                              pd.DataFrame()) for i, (a, w) in enumerate(zip(lr, warm))])
    imp, _ = round_importances(lb, exp)  # the Tune configs name the searched keys
    assert set(imp) == {"stages.operator.optimizer.lr (+2 derived)",
                        "stages.operator.warmup_steps_ratio (+1 derived)"}, imp
    assert imp["stages.operator.optimizer.lr (+2 derived)"] > 0.7


def test_importance_over_rounds_that_sampled_other_keys_reads_the_whole_configs() -> None:
    """`ups report round=all`: round A samples lr, round B the width. Each trial's sampled values leave the
    other round's key unset, so no trial set every parameter and Optuna ranked nothing (a Spearman fallback
    over half-empty columns). The whole configs set every key."""
    rng = np.random.default_rng(7)
    lr, width = 10 ** rng.uniform(-4, -2, 12), rng.choice([16, 32, 64], 12)
    rows = []
    for i, (a, w) in enumerate(zip(lr, width)):
        a, w = (float(a), 32) if i < 6 else (1e-3, int(w))  # round A keeps the width, round B the lr
        rows.append({"kind": "trial", "trial_id": f"t{i}", "nrmse": (np.log10(a) + 3) ** 2 + 0.001 * w,
                     "sampled_json": json.dumps({"stages.operator.optimizer.lr": a} if i < 6 else {"operator.hidden_dim": w}),
                     "config_json": json.dumps({"stages": {"operator": {"optimizer": {"lr": a}}},
                                                "operator": {"hidden_dim": w}})})
    imp, method = round_importances(pd.DataFrame(rows))
    assert method.startswith("Optuna") and "on 12 finished trials" in method, method
    assert set(imp) == {"stages.operator.optimizer.lr", "operator.hidden_dim"}


def test_gate_figure_counts_in_the_words_of_its_bars() -> None:
    """The title once read "0 pass, 0 failed" over three red FAIL bars: "failed" counted errored trials."""
    t = pd.DataFrame({"kind": "trial", "status": ["completed"] * 4 + ["stopped", "interrupted", "error"],
                      "nrmse": [0.1, 0.2, 0.3, 0.4, None, None, None],
                      "gate_pass": [True, False, False, None, None, None, None]})
    assert gate_counts(t) == "1 pass, 2 FAIL, 1 no gate, 1 stopped early, 1 unfinished, 1 errored"
    assert gate_counts(t.iloc[1:3]) == "0 pass, 2 FAIL"
    # an interrupted trial's bar says it is unfinished, not "stopped early: sweep interrupted at itera"
    from ups.reports import plots

    notes = dict((label, note) for label, _, _, note in plots.gate_bars(t.assign(
        trial_id=[f"t{i}" for i in range(7)], run_id=[f"r{i}" for i in range(7)], label=[f"t{i}" for i in range(7)],
        stop_reason=[None] * 4 + ["asha: early stop at iteration 12", "sweep interrupted at iteration 7; resume=true "
                                  "continues it", "error (see the trial's error.txt)"])))
    assert notes["t5 [interrupted]"] == " unfinished: resume=true continues it", notes
    assert notes["t4 [stopped]"] == " stopped early: asha: early stop at iteration 12", notes
    # the round's reference trial is the gates' yardstick, refused by construction: not counted as a FAIL
    from ups.leaderboard import REFERENCE_REASON

    t.loc[1, "gate_reasons"] = f"vs reference trial x: {REFERENCE_REASON}"
    assert gate_counts(t.iloc[:3]) == "1 pass, 1 FAIL, 1 reference"
    # and the report's table says so in its gate column (it read FAIL)
    rows = report_html._rows_html(t.iloc[:3].assign(run_id=["a", "b", "c"], label="x"), None).split("</tr>")
    assert '<td class="txt" data-v="0">reference</td>' in rows[1] and ">FAIL</td>" in rows[2], rows
    # an ASHA-stopped trial failed no gate: it has no final eval to judge (its cell read FAIL, in red)
    from ups.leaderboard import NO_EVAL_REASON

    stopped = t.iloc[[4]].assign(run_id="s", label="x", gate_pass=False, gate_reasons=f"vs x: {NO_EVAL_REASON}")
    assert '<td class="txt" data-v="0">no eval</td>' in report_html._rows_html(stopped, None)


def test_gates_figure_draws_the_reference_apart_and_keeps_cut_labels_distinct(tmp_path) -> None:
    from ups.leaderboard import REFERENCE_REASON
    from ups.reports import plots

    long = "tokens=24, hidden_dim=96, depths=[2, 2, 2], heads="
    lb = pd.DataFrame({"kind": "trial", "status": ["completed", "completed", "completed", "stopped"],
                       "nrmse": [0.08, 0.09, 0.07, None], "label": ["reference", long + "4", long + "6", long + "5"],
                       "trial_id": ["ref00001", "aaaa0004", "bbbb0006", "cccc0005"], "run_id": ["r0", "r4", "r6", "r5"],
                       "gate_pass": [False, False, False, False], "stop_reason": [None, None, None, "asha"],
                       "gate_reasons": [f"vs reference trial ref00001: {REFERENCE_REASON}", "bc", "bc", "stopped"]})
    labels, vals, colors, _ = zip(*plots.gate_bars(lb))
    assert labels == ("tokens=24, hidden_… bbbb0006 [FAIL]", "reference [reference]",
                      "tokens=24, hidden_… aaaa0004 [FAIL]", "tokens=24, hidden_… cccc0005 [stopped]")
    assert colors == (plots.FAIL, plots.REF, plots.FAIL, plots.NEUTRAL) and vals == (0.07, 0.08, 0.09, 0.0)
    assert plot_gates(lb, tmp_path / "gates.png").stat().st_size > 0


def test_learning_curves_cut_a_trial_that_went_on_from_a_checkpoint(tmp_path, monkeypatch) -> None:
    """Under PBT a trial that exploits goes on from another trial's checkpoint and reports earlier iterations
    again. Sorted by iteration, its line zig-zagged between the two runs' values; it is now drawn in report
    order, a new stretch per restart, and the title counts the restarts."""
    pbt = pd.DataFrame({"trial_id": "a", "training_iteration": [1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 7, 8],
                        "val_nrmse": [0.9, 0.5, 0.4, 0.35, 0.33, 0.32, 0.2, 0.18, 0.16, 0.15, 0.14, 0.13]})
    plain = pd.DataFrame({"trial_id": "b", "training_iteration": range(1, 9), "val_nrmse": np.linspace(0.8, 0.3, 8)})
    segs = curve_segments(pbt, "training_iteration")
    assert [list(s["training_iteration"]) for s in segs] == [[1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 7, 8]]
    assert [list(s["val_nrmse"]) for s in segs][1][0] == 0.2  # the values stay with their own run
    assert len(curve_segments(plain, "training_iteration")) == 1
    final = pbt.iloc[[0, 1, 2, 2]].assign(final=[0, 0, 0, 1])
    assert len(curve_segments(final, "training_iteration")) == 1  # the final report repeats x
    # a trial killed between its report of epoch 3 and that epoch's checkpoint reports 3 again when it resumes
    # from the checkpoint before: a restart too (the title counted 1 of 2)
    assert len(curve_segments(final.assign(final=0), "training_iteration")) == 2

    seen = drawn_figures(monkeypatch)
    assert plot_learning_curves(pd.concat([pbt, plain], ignore_index=True), tmp_path / "lc.png").exists()
    ax = seen[0].axes[0]
    assert "(1 restart(s) from a checkpoint)" in ax.get_title()
    xs = [list(line.get_xdata()) for line in ax.get_lines()]
    assert all(all(b >= a for a, b in zip(x, x[1:])) for x in xs), xs  # no line goes back in x
    assert [3, 4, 5, 6, 7, 8] in xs and [3] in xs  # the second stretch and its restart marker
    # a trial that diverged reports the searcher's 1e3 penalty with nonfinite=1: not drawn as an nRMSE (the axis ran
    # to 1e3), and its legend says it diverged
    blown = pd.DataFrame({"trial_id": "c", "training_iteration": [1, 2, 3], "val_nrmse": [0.6, 0.41, 1000.0],
                          "nonfinite": [np.nan, np.nan, 1]})
    assert plot_learning_curves(pd.concat([plain, blown], ignore_index=True), tmp_path / "lc2.png").exists()
    ax = seen[-1].axes[0]
    assert max(max(line.get_ydata()) for line in ax.get_lines()) < 1.0
    assert "c (last 0.41, then diverged)" in [t.get_text() for t in ax.get_legend().get_texts()]
    # ranked and labelled on the last report (the leaderboard's figure), with a lower minimum beside it: the legend
    # said "best 0.0805" for a trial the leaderboard, TPE and the promotion knew at 0.0833 (the scale trial)
    dip = pd.DataFrame({"trial_id": "d", "training_iteration": [1, 2, 3], "val_nrmse": [0.5, 0.2, 0.35]})
    assert plot_learning_curves(pd.concat([plain, dip, blown], ignore_index=True), tmp_path / "lc3.png", top=2).exists()
    texts = [t.get_text() for t in seen[-1].axes[0].get_legend().get_texts()]
    assert texts == ["b (last 0.3)", "d (last 0.35, min 0.2)"], texts  # c diverged: ranked after them


def test_a_pbt_round_report_lists_the_schedules_behind_its_best_trials() -> None:
    """Under PBT a row's config is a trial's last values; the report lists the stretches its weights trained in."""
    sched = [{"from_iteration": 0, "trial": "x_00002", "values": {"stages.operator.optimizer.lr": 0.002}},
             {"from_iteration": 6, "trial": "x_00000", "values": {"stages.operator.optimizer.lr": 0.0024}}]
    lb = pd.DataFrame({"kind": ["trial", "trial", "baseline"], "trial_id": ["x_00000", "x_00001", None],
                       "val_nrmse": [0.08, 0.09, None], "nrmse": [0.1, 0.11, 0.25],
                       "pbt_schedule": [json.dumps(sched), "", None]})
    section = report_html._pbt_schedules_html(lb)
    assert 'id="pbt-schedules"' in section and section.count("<tr><td>") == 1
    assert "from the start (x_00002): lr=0.002 → it 6 (x_00000): lr=0.0024" in section
    assert report_html._pbt_schedules_html(lb.drop(columns="pbt_schedule")) == ""  # an ASHA round
    assert report_html._pbt_schedules_html(lb.assign(pbt_schedule="")) == ""  # PBT never exploited


def test_a_pbt_report_shows_no_importance_and_names_its_survival_figure(tmp_path: Path, monkeypatch) -> None:
    """Under PBT a trial's score comes from a schedule of values: an importance of the rows' last values misled
    (PED-ANOVA on one lineage); and the survival figure of a FIFO or PBT round is not an ASHA rung survival.
    The scheduler is read from the sweep's ``ups_sweep.json``."""
    from ups.reports.experiment import load_experiment

    folder = tmp_path / "round_a-pbt"
    (folder / "t_00000").mkdir(parents=True)
    (folder / "t_00000" / "result.json").write_text(
        "".join(json.dumps({"training_iteration": i, "val_nrmse": 1.0 / i}) + "\n" for i in (1, 2, 3)))
    (folder / "ups_sweep.json").write_text(json.dumps({"sweep": {"scheduler.name": "pbt"}}))
    exp = load_experiment(folder)
    assert exp.scheduler == "pbt"
    seen = drawn_figures(monkeypatch)
    lb = pd.DataFrame(_rows("round_a", 6, seed=0))
    titles = {}
    for scheduler in ("pbt", "asha", "fifo"):
        exp.sweep["scheduler.name"] = scheduler
        seen.clear()
        figs = {f.key: f for f in report_html._render_figures(lb, lb, exp, None, tmp_path, "val_nrmse")}
        if scheduler == "pbt":
            assert figs["importance"].png is None and "schedule of values" in figs["importance"].note
        else:
            assert figs["importance"].png == "importance.png", figs["importance"].note
        titles[scheduler] = [f.axes[0].get_title() for f in seen if "survival" in f.axes[0].get_title()]
    assert titles["asha"][0].startswith("ASHA rung survival: 1 trials"), titles
    assert titles["fifo"][0].startswith("Trial survival (FIFO: no early stopping"), titles
    assert titles["pbt"][0].startswith("Trial survival (PBT"), titles
    # a folder without its sweep record (or no experiment at all): an exploited trial's schedule says PBT
    sched = json.dumps([{"from_iteration": 0, "trial": "t_00000", "values": {}}])
    for e in (None, ExperimentResults(path=str(folder), trials=exp.trials)):
        figs = {f.key: f for f in report_html._render_figures(lb.assign(pbt_schedule=sched), lb.assign(
            pbt_schedule=sched), e, None, tmp_path, "val_nrmse")}
        assert figs["importance"].png is None and "schedule of values" in figs["importance"].note


def test_the_best_trial_is_chosen_on_validation_not_on_the_test_split() -> None:
    """The report's and the comparison's best trial was the lowest *test* nRMSE, a figure then reported as its
    score: selected and scored on the same split. The sweep's own choice (ASHA, TPE) is on val_nrmse."""
    from ups.reports.sources import best_trial

    t = pd.DataFrame({"kind": "trial", "run_id": ["a", "b", "c"], "val_nrmse": [0.08, 0.07, 0.09],
                      "nrmse": [0.095, 0.10, 0.09], "gate_pass": False})
    assert best_trial(t)["run_id"] == "b" and "_key" not in best_trial(t)
    assert best_trial(t.assign(gate_pass=[True, False, True]))["run_id"] == "a"  # passing trials first
    assert best_trial(t.assign(val_nrmse=[0.08, None, 0.09]))["run_id"] == "c"  # no val figure for all: test


def test_pareto_front_keeps_only_non_dominated() -> None:
    df = pd.DataFrame({"c": [1, 2, 3, 4, 5], "nrmse": [0.5, 0.6, 0.3, 0.3, 0.1]})
    assert pareto_front(df, "c")["c"].tolist() == [1, 3, 5]


def test_compare_deltas_and_config_diff(shared_reports) -> None:
    lb = load_leaderboard(shared_reports / "leaderboard.csv")
    c = compare_rounds(lb, "round_a", "round_b")
    a = lb[(lb["round"] == "round_a") & (lb["gate_pass"] == True)].sort_values("nrmse").iloc[0]  # noqa: E712
    b = lb[(lb["round"] == "round_b") & (lb["gate_pass"] == True)].sort_values("nrmse").iloc[0]  # noqa: E712
    m = {r["metric"]: r for r in c["metrics"]}
    assert m["nrmse"]["delta"] == pytest.approx(b["nrmse"] - a["nrmse"])
    assert m["nrmse"]["verdict"] == ("round_b better" if b["nrmse"] < a["nrmse"] else "round_a better")
    assert c["stats"]["round_a"] == {"trials": 6, "failed": 1, "gates passed": 2, "total wall clock (s)": 195.0}
    assert {d["key"] for d in c["config_diff"]} <= {"stages.operator.optimizer.lr", "operator.hidden_dim"}
    assert "stages.operator.optimizer.lr" in {d["key"] for d in c["config_diff"]}


def test_compare_text_keeps_sentences_apart_and_groups_one_change() -> None:
    """The text summary printed two rounds' gate reasons into one run-on line and every config difference in
    one line, the four widths that follow one searched width as four changes."""
    from ups.reports.compare import format_text

    def row(r: str, width: int, lr: float, reason: str) -> dict:
        cfg = {"operator": {"hidden_dim": width}, "encoder": {"hidden_dim": width}, "decoder": {"hidden_dim": width},
               "stages": {"operator": {"optimizer": {"lr": lr}}}}
        return {"run_id": f"{r}-0", "timestamp": "2026-12-03T10:00:00", "round": r, "kind": "trial", "label": r, "trial_id": f"{r}0", "status": "completed",
                "nrmse": 0.1, "gate_pass": False, "gate_reasons": reason, "wall_clock": 30.0, "config_json": json.dumps(cfg)}

    lb = pd.DataFrame([row("round_a", 64, 0.000752440003272788, "vs reference trial f9: bc_violation 0.0758 > 1× 0.0669"),
                       row("round_b", 96, 0.002, "vs reference trial 24: bc_violation 0.0973 > 1× 0.0817")])
    lines = format_text(compare_rounds(lb, "round_a", "round_b")).splitlines()
    assert "  round_a: vs reference trial f9: bc_violation 0.0758 > 1× 0.0669" in lines
    assert "  round_b: vs reference trial 24: bc_violation 0.0973 > 1× 0.0817" in lines
    assert ("  decoder.hidden_dim: 64 → 96 (+2 with the same change: encoder.hidden_dim, operator.hidden_dim)"
            in lines)
    assert "  stages.operator.optimizer.lr: 0.0007524 → 0.002" in lines


def test_compare_takes_two_sweeps_of_one_round() -> None:
    """Round A under ASHA and under PBT are two sweeps of one round: compared by their experiment names."""
    def row(exp: str, tid: str, val: float, nrmse: float, scheduler: str) -> dict:
        return {"run_id": f"{exp}-{tid}", "timestamp": "2026-12-04T10:00:00", "round": "round_a", "kind": "trial",
                "experiment": exp, "label": tid, "trial_id": tid, "status": "completed", "gate_pass": False,
                "val_nrmse": val, "nrmse": nrmse, "wall_clock": 30.0,
                "config_json": json.dumps({"stages": {"operator": {"optimizer": {"lr": 0.001 if scheduler == "pbt" else 0.0008}}}})}

    lb = pd.DataFrame([row("round_a-asha", "a1", 0.085, 0.0997, "asha"), row("round_a-asha", "a2", 0.105, 0.12, "asha"),
                       row("pbt-ref", "p1", 0.094, 0.0887, "pbt")])
    c = compare_rounds(lb, "round_a-asha", "pbt-ref")
    assert c["stats"]["round_a-asha"]["trials"] == 2 and c["stats"]["pbt-ref"]["trials"] == 1
    assert c["best"]["round_a-asha"]["trial_id"] == "a1" and c["best"]["pbt-ref"]["trial_id"] == "p1"
    assert {m["metric"]: m["delta"] for m in c["metrics"]}["nrmse"] == pytest.approx(0.0887 - 0.0997)
    assert compare_rounds(lb, "round_a", "pbt-ref")["stats"]["round_a"]["trials"] == 3  # a round: all its sweeps
    # two sweeps' names are longer than a column: the header printed them as one word
    from ups.reports.compare import format_text

    long = lb.replace({"round_a-asha": "round_a-20261207-054530", "pbt-ref": "round_a-20261207-055213"})
    head = format_text(compare_rounds(long, "round_a-20261207-054530", "round_a-20261207-055213")).splitlines()[1]
    assert head.split()[:3] == ["metric", "round_a-20261207-054530", "round_a-20261207-055213"], head


def _paired_rows(a_samples: list[float], b_samples: list[float], *, hash_b: str = "h1") -> pd.DataFrame:
    def row(r: str, samples: list[float], h: str) -> dict:
        cell = json.dumps({"nrmse": samples, "nrmse_ttc": [0.9 * v for v in samples]})
        return {"run_id": f"{r}-0", "timestamp": "2026-12-03T10:00:00", "round": r, "kind": "trial", "label": r,
                "trial_id": f"{r}0", "status": "completed", "gate_pass": True,
                "nrmse": float(np.mean(samples)), "nrmse_ttc": 0.9 * float(np.mean(samples)), "val_nrmse": 0.1,
                "eval_samples_json": cell, "data_hash": h, "wall_clock": 1.0, "config_json": "{}"}
    return pd.DataFrame([row("round_a", a_samples, "h1"), row("round_b", b_samples, hash_b)])


def test_compare_reads_the_nrmse_verdict_from_a_paired_interval() -> None:
    """compare called any nonzero nRMSE difference a win ("round_b better" at Δ −0.0004 over 8 samples).
    The verdict now reads a paired-bootstrap interval over the test samples both trials were scored on."""
    from ups.reports.compare import format_text

    rng = np.random.default_rng(0)
    base = list(rng.uniform(0.05, 0.15, 40))
    m = lambda c: {r["metric"]: r for r in c["metrics"]}  # noqa: E731
    # B lower on every sample by 0.01: resolved, whatever the spread of the samples themselves
    won = m(compare_rounds(_paired_rows(base, [v - 0.01 for v in base]), "round_a", "round_b"))
    assert won["nrmse"]["verdict"] == "round_b better" and won["nrmse_ttc"]["verdict"] == "round_b better"
    lo, hi = won["nrmse"]["interval"]
    assert lo == pytest.approx(-0.01) and hi == pytest.approx(-0.01) and won["nrmse"]["n_samples"] == 40
    # the same mean difference as noise around zero per sample: not a win
    noisy = [v + d for v, d in zip(base, rng.normal(-0.002, 0.03, 40))]
    tie = m(compare_rounds(_paired_rows(base, noisy), "round_a", "round_b"))
    assert tie["nrmse"]["interval"][0] < 0 < tie["nrmse"]["interval"][1]
    assert tie["nrmse"]["verdict"] == "no clear difference"
    # 8 samples (the smoke profile): interval shown, not read
    few = compare_rounds(_paired_rows(base[:8], [v - 0.01 for v in base[:8]]), "round_a", "round_b")
    assert m(few)["nrmse"]["verdict"] == "round_b better? (8 samples, not resolved)"
    assert "8 test samples: too few to read an interval (needs 20)" in format_text(few)
    # another eval.max_samples (round A's 8 against the dims round's 25): paired on the 8 both scored, where B is
    # worse although its mean over its own 25 samples is lower
    longer = [v + 0.02 for v in base[:8]] + [0.001] * 17
    mixed = compare_rounds(_paired_rows(base[:8], longer), "round_a", "round_b")
    assert m(mixed)["nrmse"]["delta"] < 0 and m(mixed)["nrmse"]["n_samples"] == 8
    assert m(mixed)["nrmse"]["interval"] == [pytest.approx(0.02), pytest.approx(0.02)]
    assert m(mixed)["nrmse"]["verdict"] == "round_a better? (8 samples, not resolved)"
    assert "the first 8 test samples, scored by both (8 vs 25)" in format_text(mixed)
    # other data: no pairing and no verdict (the upgrade trial: "round_a better" on every row under the warning that
    # the two do not compare), and the text says why
    other = compare_rounds(_paired_rows(base, [v - 0.01 for v in base], hash_b="h2"), "round_a", "round_b")
    assert m(other)["nrmse"]["interval"] is None and m(other)["nrmse"]["verdict"] == "no verdict (other data)"
    assert all(r["verdict"] in ("", "no verdict (other data)") for r in other["metrics"]), other["metrics"]
    assert "Δ nrmse: no interval, scored on other data (data_hash h1 vs h2)" in format_text(other).splitlines()


def test_a_rounds_size_curves_come_from_its_own_trials() -> None:
    """The dims report's nRMSE-vs-params curve took its best-per-size points from every round on the leaderboard:
    round A's 0.05 at 300K params bent the dims curve at that size. Other rounds are now grey context."""
    from ups.reports.plots import sized_trials

    rows = [{"run_id": f"dims-{p}", "kind": "trial", "round": "dims", "params": p, "nrmse": n, "nrmse_ttc": n}
            for p, n in ((1e4, 0.3), (3e5, 0.2), (1e6, 0.1))]
    rows.append({"run_id": "round_a-0", "kind": "trial", "round": "round_a", "params": 3e5, "nrmse": 0.05,
                 "nrmse_ttc": 0.05})
    lb = pd.DataFrame(rows)
    own, others = sized_trials(lb, {"dims-10000.0", "dims-300000.0", "dims-1000000.0"})
    assert own.groupby("params")["nrmse"].min().to_dict() == {1e4: 0.3, 3e5: 0.2, 1e6: 0.1}
    assert others["run_id"].tolist() == ["round_a-0"]
    own, others = sized_trials(lb, None)  # round=all: every trial draws the curves
    assert len(own) == 4 and others.empty


def test_reports_import_without_ray() -> None:
    import subprocess
    import sys

    code = ("import sys, ups.reports.html, ups.reports.cli, ups.reports.export, ups.reports.compare; "
            "assert 'ray' not in sys.modules, 'ups.reports imported ray'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_round_is_reported_with_the_baselines_of_its_own_data() -> None:
    """Two profiles can share one leaderboard: a round's report pairs its trials with same-data baselines."""
    from ups.reports.sources import select_round

    rows = pd.DataFrame([
        {"run_id": "baseline-fno-aaaaaaaaaaaa", "kind": "baseline", "label": "fno", "nrmse": 0.24, "round": "",
         "data_hash": "aaaaaaaaaaaa"},
        {"run_id": "baseline-fno-bbbbbbbbbbbb", "kind": "baseline", "label": "fno", "nrmse": 0.03, "round": "",
         "data_hash": "bbbbbbbbbbbb"},
        {"run_id": "round_a-x-t1", "kind": "trial", "round": "round_a", "nrmse": 0.1,
         "data_hash": "aaaaaaaaaaaa0123456789"},
    ])
    picked = select_round(rows, "round_a")
    assert sorted(picked["run_id"]) == ["baseline-fno-aaaaaaaaaaaa", "round_a-x-t1"]
    legacy = rows.assign(data_hash=["aaaaaaaaaaaa", "bbbbbbbbbbbb", None])  # trials written before data_hash
    assert len(select_round(legacy, "round_a")) == 3


def test_without_experiment_the_report_and_notebook_read_the_newest_sweep(tmp_path) -> None:
    """``ups report`` after a new sweep of a round drew the trial histories of the sweep with the most rows (an
    older, larger one); it now reads the newest sweep's, as the notebook does. A sweep's seed retrains
    (``seeds-<sweep>``, which end after it) stand for the sweep itself."""
    from ups.reports.sources import newest_sweep

    old, new = "round_a-20261201-100000", "round_a-20261202-100000"
    rows = []
    for name, n, seed in ((old, 5, 0), (new, 2, 2)):  # seed 2: later timestamps
        for i, r in enumerate(_rows("round_a", n, seed=seed)):
            tdir = tmp_path / "runs" / name / f"trial_{i}"
            tdir.mkdir(parents=True)
            (tdir / "result.json").write_text(json.dumps({"trial_id": f"{name}_{i}", "training_iteration": 1,
                                                         "val_nrmse": 0.5}) + "\n")
            r.update(run_id=f"{name}-{i}", trial_id=f"{name}_{i}", experiment=name,
                     checkpoint=str(tdir / "checkpoint_000000"))
            rows.append(r)
    lb = tmp_path / "reports" / "leaderboard.csv"
    upsert_rows(lb, rows + BASELINES)
    page = report_html.write_report(None, lb, "round_a", tmp_path / "out").read_text()
    assert f"experiment {tmp_path / 'runs' / new} (2 Tune trials)" in page, page[:1500]
    frame = pd.read_csv(lb)
    assert newest_sweep(frame) == new
    retrain = frame[frame["experiment"] == new].head(1).assign(experiment=f"seeds-{new}", run_id="r",
                                                               timestamp="2026-12-31T00:00:00")
    assert newest_sweep(pd.concat([frame, retrain])) == new
    assert newest_sweep(pd.concat([frame[frame["experiment"] == old], retrain])) == f"seeds-{new}"  # no parent: itself
    assert newest_sweep(frame[frame["kind"] == "baseline"]) is None


def test_report_finds_the_experiment_of_a_sweep_stored_elsewhere(tmp_path, monkeypatch) -> None:
    """The leaderboard names a sweep's experiment by name. With storage_path=/elsewhere (or `ups report` run
    from another folder) runs/sweeps/<name> does not exist; the trials' checkpoint paths lead to the folder,
    and the history figures (learning curves, rung survival) are drawn instead of skipped."""
    name = "round_a-20261203-174411"
    exp = tmp_path / "scratch" / "sweeps" / name
    rows = _rows("round_a", 3, seed=1)
    for i, r in enumerate(rows):
        tdir = exp / f"trial_{i}"
        tdir.mkdir(parents=True)
        hist = [{"trial_id": r["trial_id"], "training_iteration": k, "val_nrmse": 1.0 / k} for k in (1, 2, 3)]
        (tdir / "result.json").write_text("".join(json.dumps(h) + "\n" for h in hist))
        r.update(experiment=name, trial_id=r["trial_id"], checkpoint=str(tdir / "checkpoint_000002"))
    lb = tmp_path / "reports" / "leaderboard.csv"
    upsert_rows(lb, rows + BASELINES)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    index = report_html.write_report(None, lb, "round_a", tmp_path / "out")
    page = index.read_text()
    assert str(exp) in page and (tmp_path / "out" / "learning_curves.png").exists(), page[:2000]
    # the notebook resolves the same way; an S3 sweep's checkpoints give its bucket folder
    from ups.reports.sources import experiment_folder

    assert experiment_folder(pd.read_csv(lb), name) == str(exp)
    s3 = pd.DataFrame({"experiment": [name], "checkpoint": [f"s3://bkt/sweeps/{name}/trial_0/checkpoint_000001"]})
    assert experiment_folder(s3, name) == f"s3://bkt/sweeps/{name}"
    assert experiment_folder(s3.assign(checkpoint=None), name, "/data") == f"/data/{name}"
    # the fallback under a relative storage_path (a leaderboard whose checkpoints moved) is absolute: Ray's
    # ExperimentAnalysis read 'runs/sweeps/<name>' as a URI and the notebook stopped with "URI has empty scheme"
    assert experiment_folder(s3.assign(checkpoint=None), name, "runs/sweeps") == str(elsewhere / "runs" / "sweeps" / name)
    assert experiment_folder(s3.assign(checkpoint=None), name, "s3://b/p/") == f"s3://b/p/{name}"
    # a folder that no longer exists costs those figures, not the report
    import shutil

    shutil.rmtree(exp)
    page = report_html.write_report(None, lb, "round_a", tmp_path / "out2").read_text()
    assert "no longer exists" in page and not (tmp_path / "out2" / "learning_curves.png").exists()
    # the note names where the leaderboard placed the sweep (not only the default folder) and the fix
    assert html.escape(f"place it in '{exp}'") in page and "pass experiment=&lt;its folder now&gt;" in page


@pytest.mark.parametrize("arg", ["out=s3://bucket/rep", "leaderboard=s3://bucket/lb.csv",
                                 "champion=s3://bucket/champion.json"])
def test_report_refuses_s3_paths_it_would_write_locally(arg, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="local files.*Fix: copy it locally"):
        report_main(["round=all", arg])
    assert not (tmp_path / "s3:").exists()  # not a folder named "s3:" in the working directory


def test_the_sweeps_report_shows_the_sweeps_own_champion_record(shared_reports, tmp_path) -> None:
    """The engine's report read champion.json next to the leaderboard whatever ``champion=`` said: the full
    profile's report (champion_full.json) was headed by the smoke profile's champion."""
    from ups.tune.launcher import write_report

    full = shared_reports / "champion_full.json"
    full.write_text(json.dumps({"run_id": "round_a-3", "checkpoint": str(tmp_path / "nope3.pt")}))
    page = write_report("", shared_reports / "leaderboard.csv", "round_a", tmp_path / "r", champion=full).read_text()
    assert f"champion ({full})" in page and f"champion ({shared_reports / 'champion.json'})" not in page


def _two_profiles(d: Path) -> Path:
    """One round run under the smoke and the full profile into one leaderboard, each with its baselines."""
    lb = d / "leaderboard.csv"
    smoke, full = "5a0e1c9d7b3f0000", "f00dfeedbeef0000"
    rows = [{"run_id": f"baseline-{n}-{h[:12]}", "kind": "baseline", "label": n, "nrmse": v, "data_hash": h[:12]}
            for h, vals in ((smoke, (0.77, 0.33, 0.20)), (full, (0.70, 0.10, 0.03)))
            for n, v in zip(("persistence", "linear", "fno"), vals)]
    for h, exp, day, base in ((smoke, "round_a-smoke", "01", 0.15), (full, "round_a-full", "02", 0.02)):
        rows += [{"run_id": f"{exp}-t{i}", "trial_id": f"t{i}", "kind": "trial", "round": "round_a", "experiment": exp,
                  "status": "completed", "nrmse": base + i / 100, "val_nrmse": base + i / 100, "data_hash": h,
                  "timestamp": f"2026-01-{day}T00:00:0{i}", "params": 1000, "wall_clock": 5.0} for i in range(3)]
    upsert_rows(lb, rows)
    (d / "champion.json").write_text(json.dumps({"run_id": "round_a-smoke-t0", "checkpoint": "/x", "data_hash": smoke}))
    return lb


def test_a_round_run_on_two_data_sets_is_reported_one_data_set_at_a_time(tmp_path) -> None:
    """Smoke and full runs of a round share reports/leaderboard.csv: the report mixed their trials, drew both data
    sets' baselines unlabelled, picked its best trial across them and was headed by the smoke champion."""
    import re

    from ups.reports.sources import one_data_set

    lb = _two_profiles(tmp_path / "reports")
    page = report_html.write_report(None, lb, "round_a", tmp_path / "newest").read_text()
    kpi = dict(re.findall(r'<div class="kpi">(.*?)<b>(.*?)</b>', page))
    assert kpi["trials"] == "3" and kpi["best trial (by val nRMSE)"] == "round_a-full-t0"
    assert kpi["persistence baseline"] == "0.7" and kpi["fno baseline"] == "0.03"
    assert "scored on 2 test data sets" in page and "3 other trial(s) are left out" in page
    assert "was scored on other test data" in page and "champion (" not in page  # the smoke champion is not this data's
    rows = load_leaderboard(lb)
    for exp, data_hash, want in ((tmp_path / "runs" / "round_a-smoke", None, "5a0e1c9d7b3f"),  # the engine's own sweep
                                 (None, "5a0e", "5a0e1c9d7b3f"), (None, None, "f00dfeedbeef")):
        shown, chosen, _ = one_data_set(rows[rows["round"].isin(["round_a", "baseline"]) | (rows["kind"] == "baseline")],
                                        exp, data_hash)
        assert chosen == want and set(shown["data_hash"].str[:12]) == {want} and len(shown) == 6
    assert report_main(["leaderboard=" + str(lb), "round=round_a", f"out={tmp_path / 's'}", "data_hash=5a0e"]) == 0
    assert '<b>round_a-smoke-t0</b>' in (tmp_path / "s" / "index.html").read_text()
    with pytest.raises(ConfigError, match=r"data_hash=abc: no trial of this round was scored on it\. Fix: one of "
                                          r"5a0e1c9d7b3f, f00dfeedbeef"):
        report_main(["leaderboard=" + str(lb), "round=round_a", f"out={tmp_path / 'x'}", "data_hash=abc"])


def test_a_comparison_shows_each_best_trials_baselines_and_warns_across_data(tmp_path) -> None:
    """The comparison page showed no baselines at all, and set a smoke-data trial against a full-data one as if
    their nRMSE compared."""
    from ups.reports.compare import compare_main, format_text

    lb = _two_profiles(tmp_path / "reports")
    c = compare_rounds(load_leaderboard(lb), "round_a-smoke", "round_a-full")
    assert c["other_data"] and c["baselines"] == {"round_a-smoke": {"persistence": 0.77, "linear": 0.33, "fno": 0.2},
                                                  "round_a-full": {"persistence": 0.7, "linear": 0.1, "fno": 0.03}}
    assert "WARNING: the two best trials were scored on different test data" in format_text(c)
    page = compare_main("round_a-smoke", "round_a-full", lb, tmp_path / "c.html").read_text()
    assert 'id="compare-other-data"' in page and "<td class=txt>fno</td><td>0.2</td><td>0.03</td>" in page
    upsert_rows(tmp_path / "plain.csv", _rows("round_a", 4, 0) + _rows("round_b", 4, 1) + BASELINES)
    c = compare_rounds(load_leaderboard(tmp_path / "plain.csv"), "round_a", "round_b")  # rows without a data_hash
    assert not c["other_data"] and c["baselines"]["round_a"] == {"persistence": 0.62, "linear": 0.28}


def test_a_champion_folder_is_named_not_a_traceback(shared_reports, tmp_path) -> None:
    """champion=reports/ (the folder, not the file) raised IsADirectoryError out of ``ups report``."""
    page = report_html.write_report(None, shared_reports / "leaderboard.csv", "round_a", tmp_path / "r",
                                    champion_path=shared_reports).read_text()
    assert f"champion file &#x27;{shared_reports}&#x27; is a folder" in page
    assert f"champion={shared_reports / 'champion.json'}" in page


def test_a_missing_champion_checkpoint_names_a_fix_ups_report_takes(shared_reports, tmp_path) -> None:
    """The rollout figure's note said "Fix: pass checkpoint=…", an argument ups report refuses."""
    page = report_html.write_report(None, shared_reports / "leaderboard.csv", "round_a", tmp_path / "r").read_text()
    assert "nope.pt&#x27; does not exist" in page and "pass checkpoint=" not in page
    assert "Fix: champion=&lt;a champion.json whose checkpoint is on this machine&gt;" in page
    with pytest.raises(ConfigError, match="unknown argument 'checkpoint'"):
        report_main([f"leaderboard={shared_reports / 'leaderboard.csv'}", "checkpoint=x.pt"])


def test_the_cost_and_ttc_figures_draw_only_the_reports_data(tmp_path, monkeypatch) -> None:
    """Smoke and full profiles on one leaderboard: the report of one data set said it left the other's trials
    out, but its best-vs-cost and TTC figures drew every round's trials of both beside this data's baselines
    (round_a's line reached the other data's best nRMSE)."""
    import ups.reports.plots as plots

    rows = []
    for h, scale in (("a" * 16, 1.0), ("b" * 16, 0.1)):
        for r in _rows("round_a", 3, 0) + _rows("round_b", 3, 1):
            rows.append({**r, "run_id": f"{r['run_id']}-{h[0]}", "data_hash": h, "experiment": f"{r['round']}-{h[0]}",
                         "nrmse": r["nrmse"] * scale})
    rows += [{"run_id": f"baseline-fno-{h}", "kind": "baseline", "label": "fno", "nrmse": v, "data_hash": h * 12}
             for h, v in (("a", 0.3), ("b", 0.03))]
    lb = tmp_path / "leaderboard.csv"
    upsert_rows(lb, rows)
    drawn: dict = {}
    for name in ("plot_best_vs_cost", "plot_ttc_paradox"):
        real = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda df, path, *a, _real=real, _name=name, **k:
                            drawn.setdefault(_name, df) is df and _real(df, path, *a, **k))
    report_html.write_report(None, lb, "round_a", tmp_path / "r", data_hash="aaaa")
    assert set(drawn) == {"plot_best_vs_cost", "plot_ttc_paradox"}
    for name, df in drawn.items():
        t = df[df["kind"] == "trial"]
        assert len(t) == 6 and set(t["data_hash"]) == {"a" * 16}, name
        assert list(df.loc[df["kind"] == "baseline", "nrmse"]) == [0.3], name


def test_an_out_of_the_wrong_kind_is_refused_before_any_work(shared_reports, tmp_path) -> None:
    """ups report out=<a file>, ups report compare out=<a folder> and ups report notebook out=<a folder> ended in
    FileExistsError / IsADirectoryError tracebacks after the work (compare also left its temp file behind)."""
    lb = shared_reports / "leaderboard.csv"
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    with pytest.raises(ConfigError, match=f"out={afile} is a file; a report is a folder.*Fix: out=<a folder>"):
        report_main([f"leaderboard={lb}", "round=round_a", f"out={afile}"])
    assert afile.read_text() == "mine"
    folder = tmp_path / "cmp"
    folder.mkdir()
    with pytest.raises(ConfigError, match=f"out={folder} is a folder.*Fix: out={folder / 'compare_round_a_vs_round_b.html'}"):
        report_main(["compare", "round_a", "round_b", f"leaderboard={lb}", f"out={folder}"])
    assert not list(tmp_path.glob(".cmp.*.tmp"))
    with pytest.raises(ConfigError, match=f"out={folder} is a folder.*Fix: out={folder / 'analysis.executed.ipynb'}"):
        report_main(["notebook", f"leaderboard={lb}", f"out={folder}"])
    # report_dir=, as the sweeps take it (it was refused as an unknown argument): <dir>/<round>; not with out= too
    with pytest.raises(ConfigError, match=r"out=.* and report_dir=.* both name where the report goes"):
        report_main([f"leaderboard={lb}", "round=round_a", f"out={tmp_path / 'o'}", f"report_dir={tmp_path}"])
    assert report_main([f"leaderboard={lb}", "round=round_a", f"report_dir={tmp_path / 'rd'}"]) == 0
    assert (tmp_path / "rd" / "round_a" / "index.html").is_file()


def test_compare_picks_each_rounds_best_on_one_data_set() -> None:
    """A round run under the smoke and the full profile has trials on two test data sets in one leaderboard.
    compare picked the best across both (nRMSE on other data do not compare) and summed both into the round's
    stats.  It now compares on the data set both rounds share, and says what it left out."""
    from ups.reports.compare import format_text

    def row(r: str, tid: str, val: float, h: str, ts: str) -> dict:
        return {"run_id": f"{r}-{tid}", "timestamp": ts, "round": r, "kind": "trial", "experiment": f"{r}-{h}",
                "label": tid, "trial_id": tid, "status": "completed", "gate_pass": False, "val_nrmse": val,
                "nrmse": val, "data_hash": h * 4, "wall_clock": 10.0, "config_json": "{}"}

    lb = pd.DataFrame([row("round_a", "s1", 0.05, "smk", "2026-12-03T10:00:00"),   # smoke data: easier
                       row("round_a", "f1", 0.09, "ful", "2026-12-03T11:00:00"),
                       row("round_a", "f2", 0.08, "ful", "2026-12-03T11:05:00"),
                       row("round_b", "g1", 0.07, "ful", "2026-12-03T12:00:00")])
    c = compare_rounds(lb, "round_a", "round_b")
    assert c["best"]["round_a"]["trial_id"] == "f2" and c["best"]["round_b"]["trial_id"] == "g1"
    assert c["stats"]["round_a"]["trials"] == 2 and c["stats"]["round_a"]["total wall clock (s)"] == 20.0
    assert not c["other_data"]
    assert "round_a's trials were scored on 2 test data sets" in c["data_note"] and "1 on other data" in c["data_note"]
    assert "Compared on fulfulfulful" in c["data_note"] and "NOTE: round_a's" in format_text(c)
    # no shared data set: each round's newest data, and the two best flagged as not comparable
    lb2 = lb.copy()
    lb2.loc[lb2["round"] == "round_b", "data_hash"] = "oth" * 4
    c2 = compare_rounds(lb2, "round_a", "round_b")
    assert c2["best"]["round_a"]["trial_id"] == "f2" and c2["other_data"]
    assert "share no data set" in c2["data_note"]
    # one data set per round: nothing restricted, no note
    assert compare_rounds(lb[lb["trial_id"] != "s1"], "round_a", "round_b")["data_note"] is None


def test_compare_a_round_without_data_hash_against_one_on_two_data_sets() -> None:
    """A round whose rows record no data_hash (written before it was kept, or by other tools) compared with a
    round spanning two data sets: the pick of each round's newest data set indexed an empty frame (IndexError).
    The round without a recorded data set is now kept as it is."""
    def row(r: str, tid: str, val: float, h: str | None, ts: str) -> dict:
        return {"run_id": f"{r}-{tid}", "timestamp": ts, "round": r, "kind": "trial", "experiment": f"{r}-x",
                "label": tid, "trial_id": tid, "status": "completed", "gate_pass": False, "val_nrmse": val,
                "nrmse": val, "data_hash": h, "wall_clock": 10.0, "config_json": "{}"}

    lb = pd.DataFrame([row("round_a", "a1", 0.06, None, "2026-12-01T10:00:00"),
                       row("round_a", "a2", 0.05, None, "2026-12-01T11:00:00"),
                       row("round_b", "s1", 0.04, "smk" * 4, "2026-12-03T10:00:00"),
                       row("round_b", "f1", 0.07, "ful" * 4, "2026-12-03T11:00:00")])
    c = compare_rounds(lb, "round_a", "round_b")
    assert c["best"]["round_a"]["trial_id"] == "a2" and c["stats"]["round_a"]["trials"] == 2
    assert c["best"]["round_b"]["trial_id"] == "f1" and "(data not recorded)" in c["data_note"]


def test_experiment_folder_skips_checkpoints_not_under_the_sweeps_name() -> None:
    """A checkpoint path of the experiment's rows that does not run through /<name>/ places it nowhere; the
    refactor into recorded_experiment_folders took such a path whole and named '<checkpoint>/<name>' (an S3
    one was then returned as the experiment's folder)."""
    from ups.reports.sources import experiment_folder, recorded_experiment_folders

    lb = pd.DataFrame([{"experiment": "round_a-1", "checkpoint": "s3://bkt/elsewhere/checkpoint_000003"},
                       {"experiment": "round_a-1", "checkpoint": "s3://bkt/runs/round_a-1/trial_0/checkpoint_000002"}])
    assert recorded_experiment_folders(lb, "round_a-1") == ["s3://bkt/runs/round_a-1"]
    assert experiment_folder(lb, "round_a-1") == "s3://bkt/runs/round_a-1"


def test_compare_picks_a_data_set_with_a_finished_trial() -> None:
    """The newest trial of a round on two data sets had failed (no nRMSE): compare picked its data set and then
    refused the round as 'all failed', although it has a finished trial on its other data set."""
    def row(r: str, tid: str, nrmse: float | None, h: str, ts: str) -> dict:
        return {"run_id": f"{r}-{tid}", "timestamp": ts, "round": r, "kind": "trial", "experiment": f"{r}-{h}",
                "label": tid, "trial_id": tid, "status": "completed" if nrmse else "ERROR", "gate_pass": False,
                "val_nrmse": nrmse, "nrmse": nrmse, "data_hash": h * 4, "wall_clock": 10.0, "config_json": "{}"}

    lb = pd.DataFrame([row("round_a", "a1", 0.09, "aaa", "2026-12-03T10:00:00"),
                       row("round_a", "a2", None, "bbb", "2026-12-03T12:00:00"),   # newest, errored
                       row("round_b", "b1", 0.08, "ccc", "2026-12-03T11:00:00")])
    c = compare_rounds(lb, "round_a", "round_b")
    assert c["best"]["round_a"]["trial_id"] == "a1" and c["stats"]["round_a"]["trials"] == 1
    assert "round_a's trials were scored on 2 test data sets" in c["data_note"] and c["other_data"]


def test_the_report_shows_pdebenchs_metric_set_for_full_evals_and_baselines() -> None:
    """The PDEBench metric set (leaderboard columns PDEBENCH_COLUMNS) of the round's full evals and baselines, in
    the paper's names; the best trial stands in for a round without full evals; a leaderboard without them: none."""
    from ups.leaderboard import PDEBENCH_COLUMNS

    lb = pd.DataFrame({"kind": ["trial", "trial", "full_eval", "baseline"], "run_id": ["a", "b", "b-full", "bl-fno"],
                       "label": ["reference", "lr=1e-3", "full-eval of b", "fno"], "val_nrmse": [0.1, 0.08, None, None],
                       "nrmse": [0.11, 0.09, 0.09, 0.25], "gate_pass": [None, True, None, None],
                       "nrmse_pdebench": [0.083, 0.068, 0.0681, 0.19],
                       **{c: [0.011, 0.022, 0.0222, 0.033] for c in PDEBENCH_COLUMNS}})
    section = report_html._pdebench_html(lb)
    assert 'id="pdebench-metrics"' in section and ">cRMSE</th>" in section and ">fRMSE high</th>" in section
    assert section.count("<tr><td>") == 2 and "full-eval of b" in section and "<td>fno</td>" in section
    assert "<td>0.0222</td>" in section and "<td>0.0681</td>" in section
    no_full = report_html._pdebench_html(lb[lb["kind"] != "full_eval"])  # the best trial by val nRMSE instead
    assert no_full.count("<tr><td>") == 2 and "<td>lr=1e-3</td>" in no_full
    assert report_html._pdebench_html(lb.drop(columns=list(PDEBENCH_COLUMNS))) == ""


def test_export_reads_a_champion_record_published_on_s3(tmp_path, s3_client, s3_bucket) -> None:
    """``ups export champion champion=s3://…`` (the record an S3 sweep publishes): export only reads it, so it is let
    through to load_champion, which reads it from the bucket; ``ups report`` still refuses an s3:// champion=. A
    missing record is named with the fix before any model is loaded."""
    from ups.reports.export import main as export_main
    from ups.reports.sources import ReportError, load_champion, parse_kv

    record = {"run_id": "r1", "score": 0.1, "checkpoint": f"s3://{s3_bucket}/sweeps/e/trial_0/checkpoint_000002",
              "config": {}, "data_hash": "d"}
    s3_client.put_object(Bucket=s3_bucket, Key="sweeps/e/champion_full.json", Body=json.dumps(record).encode())
    uri = f"s3://{s3_bucket}/sweeps/e/champion_full.json"
    assert load_champion(uri) == record
    assert parse_kv([f"champion={uri}"], {"champion": "file"}, "x", remote_ok=frozenset({"champion"})) == \
        {"champion": uri}
    with pytest.raises(ReportError, match="local files"):
        parse_kv([f"champion={uri}"], {"champion": "file"}, "x")
    with pytest.raises(ConfigError, match=r"no champion: 's3://.*/sweeps/e/nope.json' does not exist on S3.*Fix"):
        export_main(["champion", f"champion=s3://{s3_bucket}/sweeps/e/nope.json", f"out={tmp_path / 'x'}"])


def test_a_report_clears_the_temp_folders_of_writers_that_are_gone(tmp_path: Path) -> None:
    """A report killed while drawing its plots left reports/.round_a.tmp-<pid> for good: the next writer removed
    only its own pid's.  Folders of live processes, and fresh ones, are kept."""
    import os
    import subprocess
    import sys

    from ups.outputs import fresh_temp_folder

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead, live, young = (tmp_path / f".round_a.tmp-{gone.stdout.strip()}", tmp_path / ".round_a.tmp-1",
                         tmp_path / ".round_a.tmp-999999999")
    for d in (dead, live, young):
        (d / "best_vs_cost.png").parent.mkdir()
        (d / "best_vs_cost.png").write_bytes(b"")
    os.utime(dead, (0, 0))
    os.utime(live, (0, 0))  # pid 1 lives
    other = tmp_path / ".round_b.tmp-999999999"
    other.mkdir()
    os.utime(other, (0, 0))
    tmp = fresh_temp_folder(tmp_path, "round_a")
    assert tmp == tmp_path / f".round_a.tmp-{os.getpid()}" and tmp.is_dir() and not any(tmp.iterdir())
    assert not dead.exists() and live.exists() and young.exists() and other.exists()


def test_the_reference_is_not_drawn_or_carded_as_a_gate_failure(tmp_path: Path, monkeypatch) -> None:
    """The round's reference trial is the gates' yardstick (gate_pass False by construction): the Pareto figure
    drew it red and a model card of it (crowned by promotion.force=true) advised against any production use
    "until the failed physics gates are understood"."""
    from ups.leaderboard import REFERENCE_REASON
    from ups.reports.model_card import render_model_card
    from ups.reports.plots import FAIL, REF, plot_pareto

    ref = {"gate_pass": False, "gate_reasons": f"vs reference trial x: {REFERENCE_REASON}"}
    assert "failed physics gates" not in render_model_card({"name": "x", **ref})
    assert "failed physics gates" in render_model_card({"name": "x", "gate_pass": False, "gate_reasons": "bc"})
    seen = drawn_figures(monkeypatch)
    lb = pd.DataFrame([{"run_id": "r", "kind": "trial", "label": "reference", "nrmse": 0.2, "wall_clock": 10.0, "est_cost": 0.0, "gpu_hours": 0.0, **ref},
                       {"run_id": "t", "kind": "trial", "label": "lr=1", "nrmse": 0.3, "wall_clock": 12.0, "est_cost": 0.0, "gpu_hours": 0.0,
                        "gate_pass": False, "gate_reasons": "bc"}])
    plot_pareto(lb, tmp_path / "p.png")
    from matplotlib.colors import to_hex

    colours = [to_hex(c) for c in seen[0].axes[0].collections[0].get_facecolors()]
    assert colours == [REF, FAIL], colours


def test_compare_verdicts_follow_each_metrics_direction_and_leave_cost_and_run_keys_alone() -> None:
    """rollout_horizon is higher-is-better, cost columns get no verdict, ``relative`` is Δ over A's value, the TTC
    row is paired on the TTC figures (B better without TTC, worse with it) and run.* keys are no config difference."""
    rng = np.random.default_rng(1)
    base = list(rng.uniform(0.05, 0.15, 40))
    lb = _paired_rows(base, [v - 0.01 for v in base])
    lb["eval_samples_json"] = [lb["eval_samples_json"][0],
                               json.dumps({"nrmse": [v - 0.01 for v in base], "nrmse_ttc": [v + 0.01 for v in base]})]
    lb["rollout_horizon"] = [5.0, 7.0]
    lb["conservation_gap"] = [0.2, 0.1]
    lb["wall_clock"] = [1.0, 2.0]
    lb["config_json"] = [json.dumps({"run": {"seed": 1}, "model": {"dim": 32}}),
                         json.dumps({"run": {"seed": 2}, "model": {"dim": 64}})]
    c = compare_rounds(lb, "round_a", "round_b")
    m = {r["metric"]: r for r in c["metrics"]}
    assert m["rollout_horizon"]["verdict"] == "round_b better"
    assert m["conservation_gap"]["verdict"] == "round_b better"
    assert m["conservation_gap"]["relative"] == pytest.approx(-0.5)
    assert m["wall_clock"]["delta"] == pytest.approx(1.0) and m["wall_clock"]["verdict"] == ""
    assert m["nrmse"]["verdict"] == "round_b better" and m["nrmse_ttc"]["verdict"] == "round_a better"
    assert [d["key"] for d in c["config_diff"]] == ["model.dim"]


def test_importance_shares_sum_to_one_and_skip_constant_ignored_and_unfinished_entries() -> None:
    """Spearman fallback on 3 trials: |ρ| = 1 and 0.5 become shares 2/3 and 1/3; an infinite nRMSE is no finished
    trial; 4 finished trials go to Optuna; keys that do not vary, or are run bookkeeping, are no parameters."""
    from ups.reports.importance import varying_params

    df = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [1.0, 3.0, 2.0, 0.5], "nrmse": [0.1, 0.2, 0.3, np.inf]})
    imp, method = param_importance(df, ["a", "b"])
    assert "only 3 finished" in method
    assert imp == {"a": pytest.approx(2 / 3), "b": pytest.approx(1 / 3)}
    rng = np.random.default_rng(5)
    four = pd.DataFrame({"a": rng.uniform(0, 1, 4), "b": rng.uniform(0, 1, 4), "nrmse": rng.uniform(0, 1, 4)})
    assert param_importance(four, ["a", "b"])[1].startswith("Optuna")
    configs = [{"model": {"dim": 32, "depth": 2}, "run": {"seed": 1}, "training": {"device": "cpu"}},
               {"model": {"dim": 64, "depth": 2}, "run": {"seed": 2}, "training": {"device": "cuda"}}]
    assert varying_params(configs) == ["model.dim"]


def test_trial_state_reads_every_status_a_leaderboard_holds() -> None:
    """Errored trials are failed, interrupted ones running (resume=true continues them), early-stopped ones without
    a test score stopped (not failed), and a completed row without a score failed."""
    from ups.reports.sources import trial_state

    assert trial_state({"kind": "baseline", "status": "ERROR"}) == "baseline"
    assert trial_state({"status": "error", "nrmse": 0.1}) == "failed"
    assert trial_state({"status": "interrupted"}) == "running"
    assert trial_state({"status": "stopped", "nrmse": float("nan")}) == "stopped"
    assert trial_state({"status": "completed", "nrmse": None}) == "failed"
    assert trial_state({"status": "completed", "nrmse": 0.2}) == "ok"


def test_gate_pass_read_back_from_any_cell_form() -> None:
    """A gate_pass column comes back from CSV as bools, 0.0/1.0 or text; a blank cell is unknown, not False."""
    from ups.reports.sources import to_bool

    assert [to_bool(v) for v in (True, 1.0, np.float64(0.0), np.bool_(True), "PASS", "no", float("nan"), None, "?")] == [
        True, True, False, True, True, False, None, None, None]


def test_checkpoint_names_and_cli_keys() -> None:
    """A checkpoint is named by its checkpoint_N folder (local file or S3 URI); ``--report-dir`` is report_dir."""
    from ups.reports.sources import checkpoint_name, parse_kv

    assert checkpoint_name("/r/exp/trial_1/checkpoint_000003/checkpoint.pt") == "checkpoint_000003"
    assert checkpoint_name("s3://b/exp/trial_1/checkpoint_000003/") == "checkpoint_000003"
    assert parse_kv(["--report-dir=out"], {"report_dir": "folder"}, "ups report") == {"report_dir": "out"}


def test_a_champion_score_of_true_is_refused(tmp_path: Path) -> None:
    """``true`` is a JSON bool, not a figure (Python's bool is an int): a hand edit caught before the model card."""
    from ups.reports.sources import ReportError, load_champion

    rec = tmp_path / "champion.json"
    rec.write_text('{"checkpoint": "c.pt", "score": true}')
    with pytest.raises(ReportError, match="'score' is True, not a number"):
        load_champion(rec)
