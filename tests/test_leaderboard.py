"""``ups.leaderboard``'s file: what it writes back."""
from __future__ import annotations

import math
from pathlib import Path

from ups.leaderboard import NO_EVAL_REASON, REFERENCE_REASON, gate_word, read_leaderboard, set_values, upsert_rows


def test_counts_are_written_as_integers_beside_blank_cells(tmp_path: Path) -> None:
    """A baseline row has no ``epochs``: the column came back from the CSV as floats and every later write put
    "42.0" in the file (and in the notebook's and report's tables that print it)."""
    lb = tmp_path / "leaderboard.csv"
    upsert_rows(lb, [{"run_id": "fno", "kind": "baseline", "params": 43137, "seed": 0, "fno_steps": 120},
                     {"run_id": "t1", "kind": "trial", "params": 303105, "epochs": 42, "nrmse": 0.5}])
    set_values(lb, "gate_pass", {"t1": True})  # a rewrite of what the first write left
    upsert_rows(lb, [{"run_id": "t2", "kind": "trial", "params": 303105, "epochs": 40, "nrmse": 0.25}])
    lines = lb.read_text().splitlines()
    header = lines[0].split(",")
    cells = {line.split(",")[0]: dict(zip(header, line.split(","))) for line in lines[1:]}
    assert cells["t1"]["epochs"] == "42" and cells["t2"]["epochs"] == "40" and cells["fno"]["epochs"] == ""
    assert cells["fno"]["params"] == "43137" and cells["fno"]["fno_steps"] == "120" and cells["t1"]["seed"] == ""
    assert cells["t2"]["nrmse"] == "0.25"  # figures stay as they were
    df = read_leaderboard(lb).set_index("run_id")
    assert df.loc["t1", "epochs"] == 42 and df.loc["t1", "gate_pass"]


def test_a_count_column_holding_text_is_left_as_it_is(tmp_path: Path) -> None:
    lb = tmp_path / "leaderboard.csv"
    upsert_rows(lb, [{"run_id": "a", "epochs": "about 40"}, {"run_id": "b", "epochs": 12.5}])
    upsert_rows(lb, [{"run_id": "c", "epochs": 3}])
    df = read_leaderboard(lb).set_index("run_id")
    assert df.loc["a", "epochs"] == "about 40" and str(df.loc["b", "epochs"]) == "12.5"


def test_a_count_column_holding_a_fraction_is_written_as_it_is(tmp_path: Path) -> None:
    """Only a column of whole numbers becomes integers: casting 12.5 raised, and the write was lost."""
    lb = tmp_path / "leaderboard.csv"
    upsert_rows(lb, [{"run_id": "a", "epochs": 3}, {"run_id": "b", "epochs": 12.5}])
    df = read_leaderboard(lb).set_index("run_id")
    assert float(df.loc["a", "epochs"]) == 3 and float(df.loc["b", "epochs"]) == 12.5


def test_a_run_listed_twice_in_one_write_keeps_its_last_row(tmp_path: Path) -> None:
    """One row per run: the batch's later row (a re-evaluation) replaces the earlier one, never the other way."""
    lb = tmp_path / "leaderboard.csv"
    upsert_rows(lb, [{"run_id": "a", "nrmse": 1.0}, {"run_id": "b", "nrmse": 5.0}, {"run_id": "a", "nrmse": 2.0}])
    df = read_leaderboard(lb)
    assert sorted(df["run_id"]) == ["a", "b"] and df.set_index("run_id").loc["a", "nrmse"] == 2.0


def test_gate_word_says_pass_fail_reference_or_nothing() -> None:
    """The round's yardstick records gate_pass=False: the report must say "reference", not FAIL."""
    assert gate_word({"gate_pass": False, "gate_reasons": "vs x: " + REFERENCE_REASON}) == "reference"
    assert gate_word({"gate_pass": True, "gate_reasons": "vs x: all gates passed"}) == "pass"
    assert gate_word({"gate_pass": False, "gate_reasons": "vs x: nrmse 0.1 not ≤ baseline"}) == "FAIL"
    # an ASHA-stopped trial has no final eval: not promotable (gate_pass False), but it failed no gate
    assert gate_word({"gate_pass": False, "gate_reasons": "vs x: " + NO_EVAL_REASON}) == "no eval"
    assert gate_word({"gate_pass": math.nan, "gate_reasons": ""}) == ""
    assert gate_word({}) == ""
