"""The autoencoder-stage cache key and store (the end-to-end reuse is in test_sweep_scripts)."""
from __future__ import annotations

import copy
from pathlib import Path

from ups.config import load_config, to_dict
from ups.tune.stage_cache import StageCache, stage_cache_key


def _cfg(*overrides: str) -> dict:
    return to_dict(load_config(["preset=dim16", *overrides]))


def test_key_ignores_later_stages_and_sees_everything_else() -> None:
    base = stage_cache_key(_cfg(), "data1")
    assert base is not None
    same = ["stages.operator.optimizer.lr=0.01", "stages.operator.epochs=3", "stages.diff_residual.ema_decay=0.99",
            "stages.consistency_distill.batch_size=4", "ttc.candidates=9", "eval.max_samples=3"]
    for o in same:
        assert stage_cache_key(_cfg(o), "data1") == base, o
    differ = ["training.seed=1", "stages.autoencoder.optimizer.lr=0.01", "stages.autoencoder.epochs=3",
              "preset=dim32", "training.val_max_samples=3", "data.n=64"]
    for o in differ:
        assert stage_cache_key(_cfg(o), "data1") != base, o
    assert stage_cache_key(_cfg(), "data2") != base
    assert stage_cache_key(_cfg(), "") is None  # unknown data: never shared
    assert stage_cache_key(_cfg("stages.autoencoder.time_budget_s=5"), "data1") is None
    assert stage_cache_key(_cfg("training.time_budget_s=60"), "data1") is None
    assert stage_cache_key(_cfg("stages.autoencoder.epochs=0"), "data1") is None


def test_store_is_first_writer_wins_and_lookup_needs_a_complete_entry(tmp_path: Path) -> None:
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    (ckpt / "checkpoint.pt").write_bytes(b"weights")
    cache = StageCache(tmp_path / "cache")
    assert cache.lookup("k") is None
    reports = [{"stage": "autoencoder", "epoch": 1, "val_nrmse": 0.5}]
    assert cache.store("k", ckpt, reports)
    assert not cache.store("k", ckpt, copy.deepcopy(reports) + reports)  # the first entry stays
    found = cache.lookup("k")
    assert found is not None and found[1] == reports and (found[0] / "checkpoint.pt").read_bytes() == b"weights"
    (tmp_path / "cache" / "k" / "checkpoint" / "checkpoint.pt").unlink()
    assert cache.lookup("k") is None
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["k"]  # no temporary folders left


def test_remove_scratch_reaches_every_node(ray_session) -> None:
    from ups.tune.scratch import remove_scratch, scratch_root

    # two sweeps of one name (the same second) under two storage paths: two folders, and removing one leaves the other
    mine, other = scratch_root("scratch-test", "/data/a"), scratch_root("scratch-test", "s3-bucket/b")
    assert mine != other and mine.parent == other.parent and mine.name.startswith("scratch-test-")
    for root in (mine, other):
        entry = root / "_stage_cache" / "k"
        entry.mkdir(parents=True, exist_ok=True)
        (entry / "reports.json").write_text("[]")
    remove_scratch("scratch-test", "/data/a", here=False)  # only the tasks pinned to the cluster's nodes (here: one)
    assert not mine.exists() and (other / "_stage_cache" / "k" / "reports.json").exists()
    remove_scratch("scratch-test", "s3-bucket/b")
    assert not other.exists()
