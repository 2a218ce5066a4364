"""Champion record: a seed mean is only ever weighed against a seed mean (ups.tune.promotion)."""
from __future__ import annotations

import json
from pathlib import Path

from ups.tune.promotion import update_champion


def full_eval(rid: str, nrmse_ttc: float, seed_scores: list[float] | None = None) -> dict:
    row = {"run_id": f"full-{rid}", "source_run_id": rid, "round": "round_a", "experiment": "exp",
           "nrmse": nrmse_ttc, "nrmse_ttc": nrmse_ttc, "checkpoint": f"/ckpt/{rid}", "config_json": "{}",
           "data_hash": "d1"}
    if seed_scores is not None:  # as seed_mean_candidates writes it: own seed first, JSON text
        row.update({"seed_mean": sum(seed_scores) / len(seed_scores), "seed_scores": json.dumps(seed_scores),
                    "seed_run_ids": ";".join(f"{rid}-s{i}" for i in range(len(seed_scores)))})
    return row


def test_a_seed_mean_is_compared_like_for_like(tmp_path: Path) -> None:
    champ, lb = tmp_path / "champion.json", tmp_path / "leaderboard.csv"
    # Single-seed champion at 0.100 (a selected, hence lucky, seed).
    assert update_champion(champ, [full_eval("a", 0.100)], lb)["run_id"] == "a"
    # Candidate with seeds: own seed 0.090 beats 0.100, its mean 0.105 would not. Like for like, it wins.
    rec = update_champion(champ, [full_eval("b", 0.090, [0.090, 0.115, 0.110])], lb)
    assert rec["run_id"] == "b" and rec["compared_on"] == "own_seed" and rec["replaced"] == "a"
    # Now both sides have seed means: a better own seed (0.080) with a worse mean (0.1133) loses.
    rec = update_champion(champ, [full_eval("c", 0.080, [0.080, 0.130, 0.130])], lb)
    assert rec["run_id"] == "b"
    # ... and a better mean wins on the mean.
    rec = update_champion(champ, [full_eval("d", 0.095, [0.095, 0.100, 0.102])], lb)
    assert rec["run_id"] == "d" and rec["compared_on"] == "seed_mean"
    # A later single-seed round is compared with the seed-mean champion's own seed (0.095).
    assert update_champion(champ, [full_eval("e", 0.097)], lb)["run_id"] == "d"
    rec = update_champion(champ, [full_eval("f", 0.093)], lb)
    assert rec["run_id"] == "f" and rec["compared_on"] == "own_seed"
    history = [json.loads(line)["run_id"] for line in (tmp_path / "champion_history.jsonl").read_text().splitlines()]
    assert history == ["a", "b", "d", "f"]
