"""A stop signal outside Tune's loop stays a stop even when the code it interrupts turns the
KeyboardInterrupt into another error (as omegaconf's ``flag_override`` cleanup can)."""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from typing import Iterator

import pytest

from ups.tune.stop_signals import stop_signals_as_ctrl_c


@contextmanager
def _cleanup_that_fails() -> Iterator[None]:
    try:
        yield
    finally:
        raise AttributeError("'NoneType' object has no attribute '_invalidate_flags_cache'")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_signal_comes_out_as_ctrl_c_when_the_interrupted_code_raises_something_else(sig):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as stopped:
        with stop_signals_as_ctrl_c(into_tune=False):
            with _cleanup_that_fails():
                os.kill(os.getpid(), sig)
    assert isinstance(stopped.value.__cause__, AttributeError)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_an_error_without_a_stop_signal_is_raised_as_it_is():
    with pytest.raises(AttributeError):
        with stop_signals_as_ctrl_c(into_tune=False):
            with _cleanup_that_fails():
                pass
