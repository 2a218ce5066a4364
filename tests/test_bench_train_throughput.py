"""benchmarks/train_throughput.py's end-to-end figure: every counted epoch with its validation and checkpoint."""
from __future__ import annotations

import pytest

from tests.fixtures.modules import benchmark_module


def test_end_to_end_counts_each_epochs_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    tt = benchmark_module("train_throughput")
    loop_s, val_s, ckpt_s, epochs = 1.0, 0.5, 0.25, 4

    def fake_train(cfg, run_dir, data, report):
        # the trainer's order: loop (epoch_s), validation, then wall_clock is read, then the checkpoint
        t = 0.0
        for e in range(epochs):
            t += loop_s + val_s
            report({"stage": "operator", "epoch": e + 1, "samples_per_s": 8 / loop_s, "epoch_s": loop_s,
                    "wall_clock": t}, None)
            t += ckpt_s

    monkeypatch.setattr(tt, "train", fake_train)
    data = tt.synthetic(8)
    r = tt.run_ours(["preset=dim32"], data, epochs)
    assert r["loop_samples_per_s"] == pytest.approx(8 / loop_s)
    assert r["end_to_end_samples_per_s"] == pytest.approx(8 / (loop_s + val_s + ckpt_s))
