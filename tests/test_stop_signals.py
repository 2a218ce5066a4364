"""A stop signal outside Tune's loop stays a stop even when the code it interrupts turns the
KeyboardInterrupt into another error (as omegaconf's ``flag_override`` cleanup can)."""
from __future__ import annotations

import os
import signal
import sys
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


class _Finaliser:
    """Sends the stop signal from its ``__del__``: the handler runs there, and Python only prints the
    KeyboardInterrupt it raises ("Exception ignored in …"), as for a stop that lands in any finaliser."""

    def __init__(self, sig: int) -> None:
        self.sig = sig

    def __del__(self) -> None:
        os.kill(os.getpid(), self.sig)
        for _ in range(10_000):  # the handler runs at one of these bytecodes, inside the finaliser
            pass


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_whose_interrupt_a_finaliser_swallowed_still_stops(sig, monkeypatch):
    """A Ctrl-C during the promotion's full-eval that landed in a finaliser was lost: the promotion went on and
    crowned a champion, and the driver exited 0.  ``check()`` raises it where the owner can act (the promotion
    checks after each evaluation and before crowning), and the block raises it when it ends."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    swallowed: list[type] = []  # what Python reports as "Exception ignored in …"
    monkeypatch.setattr(sys, "unraisablehook", lambda u: swallowed.append(u.exc_type))
    went_on = []
    with pytest.raises(KeyboardInterrupt):
        with stop_signals_as_ctrl_c(into_tune=False) as stops:
            _Finaliser(sig)  # deleted at once; its interrupt is printed, not raised
            went_on.append(stops.taken == [sig])
            stops.check()
            went_on.append("after check")
    assert went_on == [True] and swallowed == [KeyboardInterrupt]
    with pytest.raises(KeyboardInterrupt):
        with stop_signals_as_ctrl_c(into_tune=False):
            _Finaliser(sig)
            went_on.append("the block's end")
    assert went_on == [True, "the block's end"] and swallowed == [KeyboardInterrupt] * 2
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    with stop_signals_as_ctrl_c(into_tune=False) as stops:  # no signal: nothing to raise
        stops.check()


def test_an_error_without_a_stop_signal_is_raised_as_it_is():
    with pytest.raises(AttributeError):
        with stop_signals_as_ctrl_c(into_tune=False):
            with _cleanup_that_fails():
                pass


def test_a_sweep_script_stopped_outside_tunes_loop_says_so_and_cleans_up(capsys):
    """SIGTERM while the driver made its data, trained the baselines or wrote the report killed it without a word
    and left its lease (ups_driver.json) behind; now it is a Ctrl-C there too: the script's clean-up runs, one line
    says what happened, exit 130."""
    from ups.tune.cli import run_script

    cleaned = []

    def main(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # e.g. while the baselines train
            return 0
        finally:
            cleaned.append(True)  # the launcher releases its lease in a finally

    before = signal.getsignal(signal.SIGTERM)
    assert run_script(main, []) == 130
    assert cleaned == [True] and signal.getsignal(signal.SIGTERM) == before
    err = capsys.readouterr()
    assert "SIGTERM: stopping the sweep as for Ctrl-C" in err.out
    assert "interrupted (Ctrl-C or a stop signal)" in err.err


def test_ray_init_keeps_the_scripts_sigterm_handler():
    """ray.init installs its own SIGTERM handler (sys.exit): after it a stop while the report was written ended the
    driver without a word. connect_ray puts the script's handler back (kept_sigterm)."""
    from ups.tune.stop_signals import kept_sigterm

    def mine(signum, frame):  # pragma: no cover - never called
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, mine)
    try:
        with kept_sigterm():
            signal.signal(signal.SIGTERM, lambda signum, frame: None)  # what ray.init does
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_signal_the_driver_ignores_stays_ignored():
    """Under ``nohup`` SIGHUP is ignored: closing the terminal must not stop the sweep as a Ctrl-C would."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals_as_ctrl_c(into_tune=False):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)  # taken as Ctrl-C
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def test_a_refused_connection_means_the_local_gcs_is_gone():
    """On SIGTERM the GCS closes its port at once and its process lingers: a refused connection says it stopped;
    a port that takes the connection says it did not."""
    import socket
    from types import SimpleNamespace

    from ups.tune.stop_signals import gcs_gone

    running = SimpleNamespace(poll=lambda: None)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        port = listening.getsockname()[1]
        assert not gcs_gone(running, f"127.0.0.1:{port}")
        assert gcs_gone(SimpleNamespace(poll=lambda: 0), f"127.0.0.1:{port}")  # the process has exited
    assert gcs_gone(running, f"127.0.0.1:{port}")  # closed now: refused
