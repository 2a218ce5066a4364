"""Fake trainables for resume tests: a checkpointed loop whose first run can send the driver a Ctrl-C."""
from __future__ import annotations

from typing import Any, Callable


def checkpointed(metrics: Callable[[int], dict[str, Any]], *, iterations: int, step_s: float,
                 driver_pid: int | None = None, interrupt_at: int = 0, hold_s: float = 0.0,
                 final: dict[str, Any] | None = None, by_config: bool = False) -> Callable[[dict[str, Any]], None]:
    """A function trainable reporting ``metrics(it)`` with a checkpoint each iteration (``step_s`` apart) and
    resuming from its checkpoint; a first run (no checkpoint) with ``driver_pid`` sends that driver a SIGINT
    after iteration ``interrupt_at`` and then sleeps ``hold_s`` (0: it goes on until the driver stops it at
    a next report).  ``final``: a last report after the loop.  ``by_config``: ``metrics(it, config)``."""

    def fake(config: dict[str, Any]) -> None:
        import json as js
        import os as o
        import signal as sg
        import tempfile
        import time as t
        from pathlib import Path as P

        from ray import tune
        from ray.tune import Checkpoint

        ckpt = tune.get_checkpoint()
        start = 0
        if ckpt is not None:
            with ckpt.as_directory() as d:
                start = int(js.loads((P(d) / "it.json").read_text()))
        for it in range(start + 1, iterations + 1):
            t.sleep(step_s)
            with tempfile.TemporaryDirectory() as d:
                (P(d) / "it.json").write_text(str(it))
                tune.report(metrics(it, config) if by_config else metrics(it),
                            checkpoint=Checkpoint.from_directory(d))
            if driver_pid is not None and ckpt is None and it == interrupt_at:
                o.kill(driver_pid, sg.SIGINT)
                t.sleep(hold_s)
        if final is not None:
            tune.report(final)

    return fake
