"""``ups.leaderboard``'s file: what it writes back."""
from __future__ import annotations

from pathlib import Path

from ups.leaderboard import read_leaderboard, set_values, upsert_rows


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
