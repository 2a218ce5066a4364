"""Small-eval gates and promotion edge cases (ups.tune.gates.small_eval_gates, ups.tune.promotion): a
baseline without figures, gate-stopped/errored trials, other data, where the checkpoint lives, re-runs."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.fs
import pytest

from ups.leaderboard import read_leaderboard, update_column, upsert_rows
from ups.tune.gates import NOT_APPLIED, small_eval_gates
from ups.tune.promotion import (apply_small_eval, checkpoint_uri, force_fill, full_eval, history_path, score,
                                update_champion)
from ups.tune.sweep_config import SmallEvalGateCfg

CFG = SmallEvalGateCfg()
BASE = {"nrmse": 0.09, "conservation_gap": 0.5, "bc_violation": 0.2, "ece": 0.1}
GOOD = {"nrmse": 0.05, "conservation_gap": 0.4, "bc_violation": 0.1, "ece": 0.1}
EXP = "round_a-x"


def trial(tid: str, **kw) -> dict:
    row = {"run_id": f"{EXP}-{tid}", "experiment": EXP, "kind": "trial", "trial_id": tid, "tags": "",
           "status": "completed", "stop_reason": "completed", "config_json": "{}"}
    return {**row, **kw}


def reference(**kw) -> dict:
    return trial("ref", tags="reference", **{**BASE, **kw})


def full(rid: str, nrmse_ttc: float, data_hash: str = "d1", **kw) -> dict:
    return {"run_id": f"{rid}-full", "source_run_id": rid, "experiment": EXP, "kind": "full_eval",
            "nrmse": nrmse_ttc, "nrmse_ttc": nrmse_ttc, "checkpoint": f"/ckpt/{rid}", "config_json": "{}",
            "data_hash": data_hash, "promotion": "full_eval", **kw}


# ------------------------------------------------------------------------------ small_eval_gates
def test_normal_baseline_applies_every_gate() -> None:
    assert small_eval_gates(GOOD, BASE, CFG) == (True, [])
    ok, reasons = small_eval_gates(dict(GOOD, conservation_gap=0.6), BASE, CFG)
    assert not ok and reasons == ["conservation_gap 0.6 > 1× baseline 0.5"]


@pytest.mark.parametrize("col, at_limit, over", [("nrmse", 0.08, 0.081), ("conservation_gap", 0.5, 0.51),
                                                  ("bc_violation", 0.2, 0.21), ("ece", 0.125, 0.13)])
def test_each_gate_passes_at_its_playbook_limit_and_fails_past_it(col: str, at_limit: float, over: float) -> None:
    """The playbook's limits vs BASE: nRMSE ≤ baseline − 0.01, conservation and BC ≤ 1.0×, ECE ≤ 1.25×."""
    assert small_eval_gates(dict(GOOD, **{col: at_limit}), BASE, CFG) == (True, [])
    ok, reasons = small_eval_gates(dict(GOOD, **{col: over}), BASE, CFG)
    assert not ok and len(reasons) == 1 and reasons[0].startswith(col), reasons


@pytest.mark.parametrize("missing", [float("nan"), None, ""])
def test_a_baseline_without_nrmse_fails_the_trial(missing) -> None:
    ok, reasons = small_eval_gates(dict(GOOD, nrmse=5.0), dict(BASE, nrmse=missing), CFG)
    assert not ok and "baseline has no finite nrmse" in reasons[0] and "Fix:" in reasons[0]


@pytest.mark.parametrize("col", ["conservation_gap", "bc_violation"])
def test_a_baseline_without_a_physics_figure_fails_the_trial(col: str) -> None:
    ok, reasons = small_eval_gates(dict(GOOD, **{col: 50.0}), dict(BASE, **{col: float("nan")}), CFG)
    assert not ok and any(f"baseline has no finite {col}" in r for r in reasons)


def test_a_deterministic_baseline_says_the_ece_gate_was_not_applied() -> None:
    ok, reasons = small_eval_gates(GOOD, {k: v for k, v in BASE.items() if k != "ece"}, CFG)
    assert ok and len(reasons) == 1 and "ece" in reasons[0] and NOT_APPLIED in reasons[0]


def test_a_completed_trial_whose_eval_gave_nan_is_not_called_stopped() -> None:
    """Its reason said "trial stopped before its final evaluation" though it ran that evaluation."""
    ok, reasons = small_eval_gates(dict(GOOD, nrmse=None, status="completed"), BASE, CFG)
    assert not ok and reasons == ["no finite small-eval nRMSE (the final evaluation returned NaN/Inf or nothing)"]
    assert small_eval_gates(dict(GOOD, nrmse=None, status="stopped"), BASE, CFG)[1][0].startswith("no small-eval (")


def test_an_exact_nrmse_margin_passes() -> None:
    assert small_eval_gates(dict(GOOD, nrmse=0.02), dict(BASE, nrmse=0.03), CFG)[0]
    assert not small_eval_gates(dict(GOOD, nrmse=0.021), dict(BASE, nrmse=0.03), CFG)[0]


def test_a_trial_without_a_physics_figure_or_a_round_without_a_baseline_fails() -> None:
    """A missing trial figure is no pass of its gate, and with no baseline to compare with no trial passes."""
    no_gap = {k: v for k, v in GOOD.items() if k != "conservation_gap"}
    assert small_eval_gates(no_gap, BASE, CFG) == (False, ["conservation_gap missing"])
    assert small_eval_gates(GOOD, None, CFG) == (False, ["no baseline figures to compare with"])


# ------------------------------------------------------------------------------ apply_small_eval
def test_a_fallback_baseline_without_figures_passes_nothing(tmp_path: Path) -> None:
    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [trial("ref", tags="reference", status="stopped", stop_reason="asha: early stop at iteration 3"),
                     trial("t1", nrmse=3.0, conservation_gap=50.0, bc_violation=50.0, ece=9.0)])
    fno = [{"label": "fno", "name": "fno", "nrmse": float("nan"), "conservation_gap": float("nan"),
            "bc_violation": float("nan")}]
    assert apply_small_eval(lb, EXP, CFG, fno) == []
    row = read_leaderboard(lb).set_index("run_id").loc[f"{EXP}-t1"]
    assert not row["gate_pass"] and "baseline has no finite nrmse" in row["gate_reasons"]


def test_under_eval_max_samples_the_fallback_baseline_is_scored_on_the_trials_samples(tmp_path: Path, tiny_data,
                                                                                      capsys) -> None:
    """A sweep whose trials score the first N test trajectories (``eval.max_samples=N``) gates them, when its
    reference trial has no eval, against the FNO scored on the same N; its leaderboard keeps the whole split's
    rows (the champion's bar). The gate's text says which samples."""
    from ups.tune.launcher import baseline_rows
    from ups.tune.prepare import prepare

    n = 2
    p = prepare("round_a", [f"storage_path={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'data'}",
                            "fno_budget_s=0.5", f"eval.max_samples={n}"])
    whole, gate = baseline_rows(p.scfg, p.base, tiny_data)
    # the driver said what the minutes before the first trial went to (a sweep was silent there for 3.5 min)
    said = capsys.readouterr().out
    assert f"baselines: none cached for data {str(tiny_data.data_hash)[:12]}: fitting the linear map and training " \
           f"the FNO (0.5 s, seed 0) in this process; cached afterwards in" in said, said
    assert [r["n_test"] for r in whole] == [tiny_data.test.shape[0]] * 3 and [r["n_test"] for r in gate] == [n] * 3
    assert [r["run_id"] for r in whole] == [r["run_id"] for r in gate] and whole[2]["nrmse"] != gate[2]["nrmse"]
    # priced like a CPU trial (the cost column's total has every row), the FNO's seconds as its wall clock
    assert all(r["gpu_hours"] == 0.0 and r["est_cost"] == 0.0 for r in whole)
    assert whole[2]["wall_clock"] == round(whole[2]["train_s"], 2) > 0
    lb = tmp_path / "lb.csv"
    fno = gate[2]
    upsert_rows(lb, [trial("ref", tags="reference", status="stopped", stop_reason="asha: early stop at iteration 3"),
                     trial("t1", **dict(GOOD, nrmse=fno["nrmse"] - 0.011, conservation_gap=fno["conservation_gap"],
                                        bc_violation=fno["bc_violation"]))])
    assert apply_small_eval(lb, EXP, CFG, gate) == [f"{EXP}-t1"]
    reasons = read_leaderboard(lb).set_index("run_id").loc[f"{EXP}-t1", "gate_reasons"]
    assert reasons.startswith(f"vs fno baseline on the first {n} of {tiny_data.test.shape[0]} test trajectories "
                              "(the reference trial has no eval)")
    # the same sweep scoring its trials on the whole split: one set of rows, for both
    p = prepare("round_a", [f"storage_path={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'data'}",
                            "fno_budget_s=0.5"])
    whole2, gate2 = baseline_rows(p.scfg, p.base, tiny_data)
    assert "baselines: none cached" not in capsys.readouterr().out
    assert gate2 is whole2 and [r["nrmse"] for r in whole2] == [r["nrmse"] for r in whole]  # cached
    # fno_steps: exactly that many steps, not cut by the wall-clock budget beside it (the smoke profile's 120)
    p = prepare("round_a", [f"storage_path={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'data'}",
                            "fno_budget_s=0.001", "fno_steps=3"])
    assert p.scfg.fno_steps == 3 and prepare("round_a", [f"storage_path={tmp_path / 'runs'}"]).scfg.fno_steps == 120
    fno = baseline_rows(p.scfg, p.base, tiny_data)[0][2]
    assert (fno["label"], fno["fno_steps"], fno["fno_budget_s"]) == ("fno", 3, 0.0)  # trained with no budget to cut it
    # a sweep whose FNO is trained otherwise replaces the data's one FNO row: the sweep says so (it did silently)
    from ups.tune.launcher import fno_row_change_note

    lb = tmp_path / "leaderboard.csv"
    upsert_rows(lb, whole)
    assert fno_row_change_note(lb, whole) == ""  # the same setting again (a resume, another round)
    note = fno_row_change_note(lb, baseline_rows(p.scfg, p.base, tiny_data)[0])
    assert note.startswith(f"note: the leaderboard's FNO baseline of data {str(tiny_data.data_hash)[:12]} (0.5 s of "
                           f"training, nRMSE {whole[2]['nrmse']:.4g}) is replaced by this sweep's (3 steps, nRMSE "
                           f"{fno['nrmse']:.4g})"), note
    assert note.endswith("Fix: to keep the earlier row, run with its setting (fno_steps=0 fno_budget_s=0.5)"), note


def test_gate_stopped_and_errored_trials_fail_small_eval(tmp_path: Path) -> None:
    lb = tmp_path / "lb.csv"
    gate = "gate:nonfinite (ece NaN/Inf at iteration 10)"
    upsert_rows(lb, [reference(), trial("ok", **GOOD),
                     trial("gated", status="stopped", stop_reason=gate, **dict(GOOD, nrmse=0.04)),
                     trial("err", status="error", stop_reason="error (see the trial's error.txt)",
                           **dict(GOOD, nrmse=0.03)),
                     trial("asha", status="stopped", stop_reason="asha: early stop at iteration 4")])
    assert apply_small_eval(lb, EXP, CFG, []) == [f"{EXP}-ok"]
    rows = read_leaderboard(lb).set_index("run_id")["gate_reasons"]
    assert gate in rows[f"{EXP}-gated"] and "physics gate" in rows[f"{EXP}-gated"]
    assert "errored" in rows[f"{EXP}-err"]
    assert "no small-eval (trial stopped before its final evaluation)" in rows[f"{EXP}-asha"]  # unchanged


def test_the_reference_trial_is_marked_as_the_round_baseline_not_judged(tmp_path: Path) -> None:
    """The reference trial is the yardstick: its row says so (reports print "reference"), not a failed gate."""
    from ups.leaderboard import REFERENCE_REASON, gate_word

    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [reference(), trial("ok", **GOOD)])
    assert apply_small_eval(lb, EXP, CFG, []) == [f"{EXP}-ok"]
    ref = read_leaderboard(lb).set_index("run_id").loc[f"{EXP}-ref"]
    assert ref["gate_reasons"] == f"vs reference trial ref: {REFERENCE_REASON}" and not ref["gate_pass"]
    assert gate_word(ref) == "reference"


def test_force_promotes_past_the_gates_but_never_a_broken_trial(tmp_path: Path) -> None:
    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [reference(), trial("ok", **dict(GOOD, nrmse=0.06)),
                     trial("gated", status="stopped", stop_reason="gate:bc (violation 9 > limit 1)", nrmse=0.01),
                     trial("err", status="error", stop_reason="error (see the trial's error.txt)", nrmse=0.02),
                     trial("asha", status="stopped", stop_reason="asha: early stop at iteration 4")])
    table = read_leaderboard(lb)
    assert force_fill(table, EXP, [], 2) == [f"{EXP}-ok", f"{EXP}-ref"]  # best first; gate-stopped/errored never
    assert force_fill(table, EXP, [f"{EXP}-ref"], 2) == [f"{EXP}-ref", f"{EXP}-ok"]
    assert force_fill(table, EXP, [f"{EXP}-ok"], 1) == [f"{EXP}-ok"]


def test_a_zero_nrmse_sorts_first(tmp_path: Path) -> None:
    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [reference(), trial("a", **GOOD), trial("zero", **dict(GOOD, nrmse=0.0))])
    assert apply_small_eval(lb, EXP, CFG, []) == [f"{EXP}-zero", f"{EXP}-a"]
    assert score({"nrmse": 0.0, "nrmse_ttc": None}) == 0.0


def test_promotion_ranks_passing_trials_on_validation_not_on_the_test_split(tmp_path: Path) -> None:
    """The trial promoted (top_k) is the best on val_nrmse, as the searcher and the report's best trial choose;
    a better test nRMSE does not pick it.  Rows without val_nrmse fall back to the test nRMSE."""
    from ups.reports.sources import best_trial

    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [reference(val_nrmse=0.09), trial("val_best", **dict(GOOD, nrmse=0.06, val_nrmse=0.05)),
                     trial("test_best", **dict(GOOD, nrmse=0.055, val_nrmse=0.07))])
    assert apply_small_eval(lb, EXP, CFG, []) == [f"{EXP}-val_best", f"{EXP}-test_best"]
    table = read_leaderboard(lb)
    assert force_fill(table, EXP, [], 1) == [f"{EXP}-val_best"]
    assert best_trial(table)["run_id"] == f"{EXP}-val_best"  # the report's best is the trial promoted


def test_grid_seed_passes_rank_and_group_each_configuration_over_its_seeds(tmp_path: Path) -> None:
    """A grid repeated with the next training seeds (num_samples beyond one pass) crowned the configuration of the
    luckiest single seed (lr 1e-3: val 0.082 on seed 0, 0.142 on seed 1), its other seed left aside. The passes are
    now each configuration's seeds: ranked on the mean val figure, its other seeds full-evaluated beside it."""
    from ups.config import load_config
    from ups.tune.promotion import pass_groups, seed_mean_candidates
    from ups.tune.space import load_space

    space = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / "dims.yaml", load_config())
    dims = space.params["latent.dim"].values[:2]

    def seeded(tid: str, dim: int, seed: int, val: float, **kw) -> dict:
        return trial(tid, **dict(GOOD, val_nrmse=val, **kw),
                     sampled_json=json.dumps({"latent.dim": dim, "training.seed": seed}))

    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [seeded("a0", dims[0], 0, 0.082), seeded("a1", dims[0], 1, 0.142),
                     seeded("b0", dims[1], 0, 0.100), seeded("b1", dims[1], 1, 0.101),
                     seeded("c0", 999, 0, 0.05, status="error"), seeded("c1", 999, 1, 0.05)])
    passing = [f"{EXP}-{t}" for t in ("c1", "a0", "b0", "b1")]  # a1 failed a small-eval gate; c0 errored
    assert pass_groups(lb, passing, EXP, space, 1) == {f"{EXP}-b0": [f"{EXP}-b1"]}
    groups = pass_groups(lb, passing, EXP, space, 3)
    assert groups == {f"{EXP}-b0": [f"{EXP}-b1"], f"{EXP}-a0": [f"{EXP}-a1"], f"{EXP}-c1": [f"{EXP}-c0"]}
    fulls = seed_mean_candidates([full(f"{EXP}-b0", 0.11), full(f"{EXP}-b1", 0.13), full(f"{EXP}-c1", 0.04)], groups, 0)
    by = {r["source_run_id"]: r for r in fulls}
    assert json.loads(by[f"{EXP}-b0"]["seed_scores"]) == [0.11, 0.13] and by[f"{EXP}-b0"]["seed_mean"] == 0.12
    assert by[f"{EXP}-c1"]["seed_mean"] == math.inf  # its errored seed has no full-eval


def test_the_reports_best_trial_is_the_one_promoted_when_rows_carry_val_nrmse_ttc(tmp_path: Path) -> None:
    """Promotion ranks on val_nrmse_ttc when every candidate has it; the report's best trial (and ups report
    compare's) still ranked on the plain val_nrmse, so the two named different trials."""
    from ups.reports.sources import best_trial

    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [reference(val_nrmse=0.09, val_nrmse_ttc=0.085),
                     trial("plain_best", **dict(GOOD, nrmse=0.06, val_nrmse=0.05, val_nrmse_ttc=0.049)),
                     trial("ttc_best", **dict(GOOD, nrmse=0.055, val_nrmse=0.07, val_nrmse_ttc=0.04))])
    assert apply_small_eval(lb, EXP, CFG, [])[0] == f"{EXP}-ttc_best"
    assert best_trial(read_leaderboard(lb))["run_id"] == f"{EXP}-ttc_best"


# ------------------------------------------------------------------------------ champion
def test_a_candidate_on_other_data_never_replaces_the_champion(tmp_path: Path, capsys) -> None:
    champ, lb = tmp_path / "champion.json", tmp_path / "lb.csv"
    assert update_champion(champ, [full("gpu", 0.035, "FULLDATA")], lb)["run_id"] == "gpu"
    rec = update_champion(champ, [full("smoke", 0.8, "SMOKEDATA")], lb)
    assert rec["run_id"] == "gpu" and json.loads(champ.read_text())["run_id"] == "gpu"
    out = capsys.readouterr().out
    assert "other data" in out and "champion=<another path>" in out
    history = (tmp_path / "champion_history.jsonl").read_text().splitlines()
    assert [json.loads(h)["run_id"] for h in history] == ["gpu"]


def test_each_champion_record_keeps_its_own_history(tmp_path: Path) -> None:
    """The smoke and the full profile's records beside each other (reports/champion.json, champion_full.json) wrote one
    history, whose last line a restore could copy into the wrong record (`tail -n 1 … > champion_full.json`)."""
    smoke, full_rec, lb = tmp_path / "champion.json", tmp_path / "champion_full.json", tmp_path / "lb.csv"
    update_champion(smoke, [full("smoke", 0.8, "SMOKEDATA")], lb)
    update_champion(full_rec, [full("gpu", 0.035, "FULLDATA")], lb)
    assert history_path(full_rec) == tmp_path / "champion_full_history.jsonl"
    for record, rid in ((smoke, "smoke"), (full_rec, "gpu")):
        lines = history_path(record).read_text().splitlines()
        assert [json.loads(h)["run_id"] for h in lines] == [rid]
        assert json.loads(lines[-1]) == json.loads(record.read_text())


def test_a_rerun_promotion_keeps_the_champion_label(tmp_path: Path) -> None:
    champ, lb = tmp_path / "champion.json", tmp_path / "lb.csv"
    upsert_rows(lb, [reference(), trial("t1", **GOOD)])

    def promote() -> dict:  # as launcher.promote_round does, with full_eval's writes
        passing = apply_small_eval(lb, EXP, CFG, [])
        upsert_rows(lb, [full(passing[0], 0.04)])
        update_column(lb, [passing[0]], "promotion", "full_eval")
        return update_champion(champ, [full(passing[0], 0.04)], lb)

    promote()
    promote()  # resume=true on a finished round
    labels = read_leaderboard(lb).set_index("run_id")["promotion"]
    assert labels[f"{EXP}-t1"] == labels[f"{EXP}-t1-full"] == "champion"


@pytest.mark.parametrize("blank", [float("nan"), "", None, "not json"])
def test_a_candidate_without_config_is_skipped(tmp_path: Path, capsys, blank) -> None:
    champ, lb = tmp_path / "champion.json", tmp_path / "lb.csv"
    assert update_champion(champ, [full("a", 0.05, config_json=blank)], lb) is None
    assert not champ.exists() and "no config_json" in capsys.readouterr().out
    rec = update_champion(champ, [full("a", 0.05, config_json=blank), full("b", 0.06)], lb)
    assert rec["run_id"] == "b" and rec["config"] == {}


# ------------------------------------------------------------------------------ checkpoint location
def test_checkpoint_uri_names_where_the_checkpoint_lives(tmp_path: Path) -> None:
    tmp = Path("/tmp/checkpoint_tmp_x/checkpoint.pt")  # local_checkpoint's download
    s3 = pyarrow.fs.S3FileSystem(region="us-east-1", endpoint_override="http://127.0.0.1:9")  # no request made
    assert checkpoint_uri("bucket/sweeps/E/trial_t1/checkpoint_000003", tmp, s3) == \
        "s3://bucket/sweeps/E/trial_t1/checkpoint_000003"
    assert checkpoint_uri("s3://bucket/E/checkpoint_000003", tmp, None) == "s3://bucket/E/checkpoint_000003"
    local = tmp_path / "checkpoint_000001" / "checkpoint.pt"
    assert checkpoint_uri(str(local.parent), local, None) == str(local)


def _saved_trial(tmp_path: Path, cfg) -> tuple[Path, Path]:
    """A leaderboard with one trial row whose checkpoint (an untrained ``cfg`` model) is on disk."""
    import torch

    from ups.config import to_dict
    from ups.models.ups_model import build_model
    from ups.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(cfg).eval()
    folder = tmp_path / "trial_t1" / "checkpoint_000001"
    save_checkpoint(folder, {"config": to_dict(cfg), "grid_size": model.grid_size, "model": model.state_dict(),
                             "stage": "operator", "epoch": 0, "global_epoch": 0})
    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [trial("t1", **GOOD, checkpoint=str(folder))])
    return lb, folder


def test_full_eval_records_the_trial_checkpoint_not_a_download(tmp_path: Path, tiny_cfg, tiny_data,
                                                               monkeypatch) -> None:
    """Through a pyarrow filesystem (as with S3 storage) the checkpoint is downloaded to a temp folder for
    the eval; the row (and so champion.json) must name the trial's checkpoint, which outlives the run, and
    the download is deleted after the eval (one per promoted trial used to stay in /tmp)."""
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where Checkpoint.to_directory() downloads
    lb, folder = _saved_trial(tmp_path, tiny_cfg)
    rows = full_eval(lb, [f"{EXP}-t1"], tiny_data, filesystem=pyarrow.fs.LocalFileSystem())
    assert rows[0]["checkpoint"] == str(folder) and math.isfinite(rows[0]["nrmse"])
    assert read_leaderboard(lb).set_index("run_id").loc[f"{EXP}-t1-full", "checkpoint"] == str(folder)
    assert not list(temp.glob("checkpoint_tmp_*")), "full_eval left its checkpoint download behind"
    assert "gpu_mem_peak_mib" not in rows[0] and rows[0]["gpu_hours"] == 0.0  # ran on the CPU


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_a_full_eval_on_cuda_records_its_gpu_memory(tmp_path: Path, tiny_cfg, tiny_data) -> None:
    """A full-eval runs TTC on the whole test split, on a whole GPU: its row records its own peak, as a
    trial's row does, so the memory a promoted model needs at evaluation is on the leaderboard."""
    from ups.config import apply_overrides

    cfg = apply_overrides(tiny_cfg, {"training.device": "cuda"}, source="test")
    lb, _ = _saved_trial(tmp_path, cfg)
    row = full_eval(lb, [f"{EXP}-t1"], tiny_data)[0]
    assert 0 < row["gpu_mem_peak_mib"] < row["gpu_mem_total_mib"] and row["gpu_hours"] > 0, row
    saved = read_leaderboard(lb).set_index("run_id").loc[f"{EXP}-t1-full"]
    assert saved["gpu_mem_peak_mib"] == row["gpu_mem_peak_mib"]


def test_the_printed_leaderboard_names_trials_by_id_and_says_why_the_gates_failed(capsys) -> None:
    """The table the sweep prints at its end: it repeated the experiment in every run_id and printed gate_pass
    as 0, so "why did nothing pass?" needed the CSV. It now shows the trial id, the gates' reason, and the
    stop reason with the status."""
    from ups.leaderboard import REFERENCE_REASON
    import pandas as pd

    from ups.tune.summary import SweepOutcome, leaderboard_table

    exp = "round_a-20261203-174411"
    rows = pd.DataFrame([
        {"run_id": f"{exp}-aaaa0001", "trial_id": "aaaa0001", "experiment": exp, "kind": "trial", "label": "lr=1e-3",
         "nrmse": 0.10, "status": "completed", "stop_reason": "completed", "gate_pass": False,
         "gate_reasons": "vs reference trial rrrr0000: bc_violation 0.0758 > 1× baseline 0.0669"},
        {"run_id": f"{exp}-rrrr0000", "trial_id": "rrrr0000", "experiment": exp, "kind": "trial", "label": "reference",
         "nrmse": 0.19, "status": "completed", "stop_reason": "completed", "gate_pass": False,
         "gate_reasons": f"vs reference trial rrrr0000: {REFERENCE_REASON}"},
        {"run_id": f"{exp}-pppp0002", "trial_id": "pppp0002", "experiment": exp, "kind": "trial", "label": "lr=2e-3",
         "nrmse": 0.09, "status": "completed", "stop_reason": "completed", "gate_pass": True,
         "gate_reasons": "vs reference trial rrrr0000: all gates passed", "promotion": "small_eval"},
        {"run_id": f"{exp}-ssss0003", "trial_id": "ssss0003", "experiment": exp, "kind": "trial", "label": "lr=1e-5",
         "val_nrmse": 0.5, "status": "stopped", "stop_reason": "asha: early stop at iteration 20", "gate_pass": False,
         "gate_reasons": "vs reference trial rrrr0000: no small-eval (trial stopped before its final evaluation)"},
        {"run_id": "baseline-fno-x", "experiment": None, "kind": "baseline", "label": "fno", "nrmse": 0.25,
         "status": "completed", "stop_reason": "baseline"},
        {"run_id": "other-zzzz", "trial_id": "zzzz", "experiment": "other", "kind": "trial", "nrmse": 0.01},
    ])
    o = SweepOutcome(exp, "x", None, rows, None, None, [{"run_id": "baseline-fno-x"}])
    cols, table = leaderboard_table(o, 15)
    cell = {r[0] if r[0] != "baseline" else r[1]: dict(zip(cols, r)) for r in table}
    assert list(cell) == ["pppp0002", "aaaa0001", "rrrr0000", "fno", "ssss0003"]  # best first; other sweeps left out
    assert cell["pppp0002"]["gates"] == "pass" and cell["pppp0002"]["promotion"] == "small_eval"
    assert cell["aaaa0001"]["gates"] == "FAIL: bc_violation 0.0758 > 1× baseline 0.0669"
    assert cell["rrrr0000"]["gates"] == "reference" and cell["fno"]["gates"] == ""
    assert cell["ssss0003"]["status"] == "stopped: asha: early stop at iteration 20"
    assert cell["ssss0003"]["gates"] == "no eval"
    assert cell["aaaa0001"]["status"] == "completed" and cell["fno"]["status"] == "completed"
    # the baselines are printed however many trials beat them (print_top=15 hid all three behind 20 trials)
    assert [r[0] if r[0] != "baseline" else r[1] for r in leaderboard_table(o, 2)[1]] == ["pppp0002", "aaaa0001", "fno"]
    # print_top=0 with baselines off (benchmarks/tune_overhead.py): nothing to show, so no table is printed
    from ups.tune.summary import print_leaderboard

    o0 = SweepOutcome(exp, "x", None, rows, None, None, [])
    assert leaderboard_table(o0, 0)[1] == []
    print_leaderboard(o0, 0)
    assert capsys.readouterr().out == ""
    print_leaderboard(o, 0)
    assert "fno" in (out := capsys.readouterr().out) and "the promotion picks on test nrmse (its trials" in out
    print_leaderboard(SweepOutcome(exp, "x", None, rows.assign(val_nrmse=0.1), None, None, []), 15)
    assert "the promotion picks on validation (val_nrmse)" in capsys.readouterr().out
    # a sweep that searches ttc.* keys promotes on val_nrmse_ttc: the caption says so and the table shows it
    finished = rows["nrmse"].notna() & (rows["experiment"] == exp)
    ttc = SweepOutcome(exp, "x", None, rows.assign(val_nrmse=0.1, val_nrmse_ttc=rows["nrmse"].where(finished)),
                       None, None, [{"run_id": "baseline-fno-x"}])
    cols, table = leaderboard_table(ttc, 15)
    assert cols[2:4] == ["val_nrmse", "val_nrmse_ttc"] and dict(zip(cols, table[0]))["val_nrmse_ttc"] == "0.09"
    print_leaderboard(ttc, 0)
    assert "the promotion picks on validation (val_nrmse_ttc)" in capsys.readouterr().out
    # under the table, a line of counts: a 32-trial sweep printed its best 15 and said nothing of the other 17
    lb_path = Path("/tmp/lb.csv")
    print_leaderboard(SweepOutcome(exp, "x", lb_path, rows, None, None, [{"run_id": "baseline-fno-x"}]), 2)
    out = capsys.readouterr().out
    assert (f"{exp}: 4 trials: 3 completed, 1 stopped early (ASHA or a gate); small-eval gates: 1 pass, 1 fail, "
            f"1 reference, 1 no eval; 2 more not in the table above (every one: {lb_path})") in out, out
    print_leaderboard(SweepOutcome(exp, "x", lb_path, rows, None, None, []), 15)
    assert "4 trials: 3 completed" in (out := capsys.readouterr().out) and "more not in the table" not in out


def test_a_champion_has_to_beat_every_baseline_on_its_data(tmp_path: Path, capsys) -> None:
    """The aggressive smoke round (forced promotion) crowned a trial at nRMSE 0.28 while the FNO baseline on the
    same data scored 0.25: a "champion" worse than a baseline. Now the bar is the best baseline of that data."""
    champ, lb = tmp_path / "champion.json", tmp_path / "lb.csv"
    smoke = "5a0e1c9d7b3f2e4d6c8a01"  # a data hash; the sweep's baseline rows carry its first 12 characters
    bases = [{"label": "persistence", "nrmse": 0.77, "data_hash": smoke[:12]},
             {"label": "fno", "nrmse": 0.25, "data_hash": smoke[:12]},
             {"label": "fno", "nrmse": 0.01, "data_hash": "0ther0data000"}]  # another data's baseline is no bar here
    assert update_champion(champ, [full("weak", 0.28, smoke)], lb, bases) is None
    assert not champ.exists() and not (tmp_path / "champion_history.jsonl").exists()
    out = capsys.readouterr().out
    assert "no champion crowned: the best candidate weak scored 0.28" in out and "fno baseline's 0.25" in out
    assert "promotion.beat_baselines=false" in out
    rec = update_champion(champ, [full("good", 0.20, smoke)], lb, bases)
    assert rec["run_id"] == "good" and rec["baseline_bar"] == {"name": "fno", "nrmse": 0.25}
    # a later weak candidate is refused by the bar and the champion kept, with the champion named
    assert update_champion(champ, [full("weak2", 0.26, smoke)], lb, bases)["run_id"] == "good"
    assert "kept the champion good" in capsys.readouterr().out
    # no baselines given (baselines=false): no bar
    assert update_champion(tmp_path / "c2.json", [full("weak", 0.28, smoke)], lb)["run_id"] == "weak"
    # promotion.beat_baselines=false: no bar, but the record still names the sweep's FNO, which `ups eval` of the
    # champion trains (it trained another one, for 60 s, and reported another FNO figure than the sweep's)
    fno = [{**b, "fno_budget_s": 0.0, "fno_steps": 120, "seed": 0} for b in bases]
    rec = update_champion(tmp_path / "c3.json", [full("weak", 0.28, smoke)], lb, fno, beat_baselines=False)
    assert rec["run_id"] == "weak" and rec["baseline_bar"] is None
    assert rec["baselines_run"] == {"fno_budget_s": 0.0, "fno_steps": 120, "seed": 0}


def test_a_pbt_champion_keeps_its_schedule_and_round_c_says_it_starts_from_its_last_values(tmp_path: Path,
                                                                                           capsys) -> None:
    """A PBT trial's config is the last of a schedule, its weights partly trained in other trials: the champion
    record keeps the schedule, and a round around the champion says that it retrains only the last values."""
    from ups.config import load_config, to_dict
    from ups.tune.prepare import prepare

    schedule = [{"from_iteration": 0, "trial": "x_00001", "values": {"stages.operator.optimizer.lr": 0.001}},
                {"from_iteration": 4, "trial": "x_00000", "values": {"stages.operator.optimizer.lr": 0.0012}}]
    champ, lb = tmp_path / "champion.json", tmp_path / "lb.csv"
    cfg = json.dumps(to_dict(load_config([])))
    rec = update_champion(champ, [full("pbt", 0.05, config_json=cfg, pbt_schedule=json.dumps(schedule))], lb)
    assert rec["pbt_schedule"] == schedule and json.loads(champ.read_text())["pbt_schedule"] == schedule
    capsys.readouterr()
    prepare("round_c", [f"champion={champ}", f"storage_path={tmp_path / 'runs'}", f"leaderboard={lb}"],
            around_champion=True)
    assert ("the champion was trained by PBT (1 exploit(s): from the start (x_00001): lr=0.001 → it 4 (x_00000): "
            "lr=0.0012); round_c starts from its last values, trained from scratch") in capsys.readouterr().out
    # an ASHA champion: no schedule, no such line
    rec = update_champion(tmp_path / "c2.json", [full("asha", 0.05, config_json=cfg)], lb)
    assert "pbt_schedule" not in rec
    prepare("round_c", [f"champion={tmp_path / 'c2.json'}", f"storage_path={tmp_path / 'runs'}", f"leaderboard={lb}"],
            around_champion=True)
    assert "trained by PBT" not in capsys.readouterr().out


def test_a_numeric_sweep_name_still_matches_its_rows(tmp_path: Path) -> None:
    """name=2024: pandas read the experiment column as the number 2024, so ``lb.experiment == "2024"`` matched
    no row and the sweep ended with no gates, no promotion and an empty table (seen in a run)."""
    from ups.leaderboard import read_leaderboard, upsert_rows
    from ups.tune.summary import SweepOutcome, leaderboard_table

    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [{"run_id": "2024-t1", "trial_id": "t1", "experiment": "2024", "round": "round_a", "kind": "trial",
                      "nrmse": 0.1, "data_hash": "123456789012", "tags": "7", "label": "1"},
                     {"run_id": "baseline-fno", "kind": "baseline", "label": "fno", "nrmse": 0.2}])
    df = read_leaderboard(lb)
    assert (df["experiment"] == "2024").sum() == 1 and df.loc[0, "data_hash"] == "123456789012"
    assert df["experiment"].isna().sum() == 1  # a blank stays blank, not "nan"
    o = SweepOutcome("2024", "x", None, df, None, None, [{"run_id": "baseline-fno"}])
    assert [r[0] for r in leaderboard_table(o, 15)[1]] == ["t1", "baseline"]


def test_the_printed_leaderboard_ranks_errored_and_gate_stopped_trials_last() -> None:
    """A trial that errored, or that a physics gate stopped, ranked on its last val nRMSE among the trials ASHA
    stopped: with no trial evaluated, a failed one was printed first (seen after max_failures)."""
    import pandas as pd

    from ups.tune.summary import SweepOutcome, leaderboard_table

    def row(tid: str, val: float, status: str, reason: str) -> dict:
        return {"run_id": f"e-{tid}", "trial_id": tid, "experiment": "e", "kind": "trial", "val_nrmse": val,
                "status": status, "stop_reason": reason}

    rows = pd.DataFrame([row("err", 0.05, "error", "error (see the trial's error.txt)"),
                         row("nan", 0.06, "stopped", "gate:nonfinite (val_nrmse=nan at iteration 3)"),
                         row("asha", 0.4, "stopped", "asha: early stop at iteration 2"),
                         row("cut", 0.3, "interrupted", "sweep interrupted at iteration 4; resume=true continues it"),
                         {**row("done", 0.5, "completed", "completed"), "nrmse": 0.45},
                         {"run_id": "baseline-fno", "kind": "baseline", "label": "fno", "nrmse": 0.25,
                          "status": "completed", "stop_reason": "baseline"}])
    o = SweepOutcome("e", "x", None, rows, None, None, [{"run_id": "baseline-fno"}])
    assert [r[0] for r in leaderboard_table(o, 15)[1]] == ["baseline", "done", "cut", "asha", "nan", "err"]


def test_a_full_eval_whose_checkpoint_is_gone_is_skipped_with_the_fix(tmp_path: Path, capsys) -> None:
    """A missing checkpoint raised FileNotFoundError out of the promotion, after every trial had run, and the
    round's report was never written."""
    from ups.leaderboard import upsert_rows

    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [{"run_id": "x-t1", "kind": "trial", "checkpoint": str(tmp_path / "runs" / "x" / "checkpoint_000002")}])
    assert full_eval(lb, ["x-t1"], None) == []
    assert "x-t1: no full-eval, its checkpoint" in capsys.readouterr().out


def test_a_full_eval_whose_checkpoint_is_corrupt_is_skipped_and_the_others_run(tmp_path: Path, tiny_cfg, tiny_data,
                                                                             capsys) -> None:
    """An empty checkpoint.pt (disk full, a killed write) raised CheckpointError out of the promotion: a raw
    traceback after every trial had run, no full-eval of the other promoted trials, no champion, no report."""
    from ups.leaderboard import upsert_rows

    lb, folder = _saved_trial(tmp_path, tiny_cfg)
    empty = tmp_path / "trial_t0" / "checkpoint_000001"
    empty.mkdir(parents=True)
    (empty / "checkpoint.pt").write_bytes(b"")
    upsert_rows(lb, [trial("t0", **GOOD, checkpoint=str(empty))])
    rows = full_eval(lb, [f"{EXP}-t0", f"{EXP}-t1"], tiny_data)
    assert [r["source_run_id"] for r in rows] == [f"{EXP}-t1"]
    out = capsys.readouterr().out
    assert f"{EXP}-t0: no full-eval, its checkpoint {empty} cannot be loaded" in out and "is empty (0 bytes" in out


def test_a_resumes_kept_full_eval_carries_no_old_seed_mean_and_keeps_its_label(tmp_path: Path) -> None:
    """A resume keeps the full-eval rows of a checkpoint already evaluated on the same data; the kept row must not
    bring the seed mean the first promotion wrote into it (seed_mean_candidates scores the trial's own seed from it:
    the mean drifted on every resume), and its trial is labelled full_eval again (the resume's small-eval had set it
    back to small_eval)."""
    from types import SimpleNamespace

    lb = tmp_path / "lb.csv"
    trial = {"run_id": "t1", "experiment": EXP, "kind": "trial", "checkpoint": str(tmp_path / "trial_t1" / "checkpoint_9"),
             "promotion": "small_eval", "data_hash": "d1"}
    kept = {**full("t1", 0.08), "checkpoint": str(tmp_path / "trial_t1" / "checkpoint_9" / "checkpoint.pt"),
            "seed_mean": 0.087, "seed_scores": "[0.08, 0.09, 0.091]", "seed_run_ids": "t1;s1;s2"}
    upsert_rows(lb, [trial, kept])
    (row,) = full_eval(lb, ["t1"], SimpleNamespace(data_hash="d1"))
    assert row["run_id"] == "t1-full" and row["nrmse_ttc"] == 0.08
    assert not {"seed_mean", "seed_scores", "seed_run_ids"} & set(row) and score(row) == 0.08
    assert read_leaderboard(lb).set_index("run_id").loc["t1", "promotion"] == "full_eval"
    # other data, or a checkpoint elsewhere now (the sweep's folder moved): not kept (evaluated anew; none here)
    assert full_eval(lb, ["t1"], SimpleNamespace(data_hash="d2")) == []


def test_a_champion_config_that_is_not_a_mapping_is_refused_naming_the_record(tmp_path: Path) -> None:
    """Rounds C and D start from the champion's config: a hand-edited "config": "dim32" was refused as "unknown config
    key 'dim32'", naming neither the record nor the fix."""
    from ups.config import ConfigError
    from ups.tune.promotion import champion_record

    champ = tmp_path / "champion.json"
    champ.write_text(json.dumps({"run_id": "r1", "score": 0.1, "checkpoint": "/ckpt", "config": "dim32",
                                 "data_hash": "d1"}))
    with pytest.raises(ConfigError, match=r"champion.json: the champion record's 'config' is 'dim32', not the config "
                                          r"mapping a promotion writes\. Fix: .*champion_history\.jsonl"):
        champion_record(champ, "round_c")


def test_a_users_tag_that_contains_the_word_reference_makes_no_trial_the_reference(tmp_path: Path) -> None:
    """run.tags go onto every row; the round's reference trial is the row tagged "reference" itself (a substring
    match took the first trial of a sweep tagged e.g. "no-reference-run" for the yardstick)."""
    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [trial("ok", **dict(GOOD, nrmse=0.01), tags="profile:smoke;no-reference-run"),
                     trial("ref", **{**BASE, "tags": "profile:smoke;no-reference-run;reference"})])
    assert apply_small_eval(lb, EXP, CFG, []) == [f"{EXP}-ok"]
    rows = read_leaderboard(lb).set_index("run_id")["gate_reasons"]
    assert rows[f"{EXP}-ok"].startswith("vs reference trial ref")
