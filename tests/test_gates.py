"""In-flight physics gates and the compute budget (ups.tune.gates): their limits, exactly at and past them."""
from __future__ import annotations

from ups.tune.gates import ComputeBudgetStopper, GateLimits, GateTracker
from ups.tune.sweep_config import TrainGateCfg


def op(epoch: int = 1, **kw) -> dict:
    """An operator-stage epoch report."""
    return {"stage": "operator", "epoch": epoch, **kw}


def test_physics_gates_apply_from_the_grace_epoch_on() -> None:
    """grace_epochs=1 (the default) gates from the first epoch: a `<=` in the grace check turned the physics
    gates off for the whole first epoch of every stage."""
    tripped = GateTracker(GateLimits(conservation_gap=1.0)).update("a", op(1, val_conservation_gap=5.0))
    assert tripped is not None and tripped.startswith("gate:conservation")
    t = GateTracker(GateLimits(bc_violation=1.0, grace_epochs=3))
    assert t.update("a", op(2, val_bc_violation=5.0)) is None  # still in grace
    assert t.update("a", op(3, val_bc_violation=5.0)).startswith("gate:bc")
    # inside the autoencoder stage the operator is untrained: no physics gate at all
    ae = GateTracker(GateLimits(conservation_gap=1.0)).update("a", {"stage": "autoencoder", "epoch": 5,
                                                                    "val_conservation_gap": 5.0})
    assert ae is None


def test_a_figure_at_its_limit_passes_and_one_past_it_trips() -> None:
    for key, col in (("conservation_gap", "val_conservation_gap"), ("bc_violation", "val_bc_violation")):
        limits = GateLimits(**{key: 1.0})
        assert GateTracker(limits).update("a", op(**{col: 1.0})) is None, key
        assert GateTracker(limits).update("a", op(**{col: 1.001})) is not None, key


def test_divergence_trips_past_the_factor_and_from_min_iterations_on() -> None:
    """A loss exactly divergence_factor × the stage's best is not divergence; past it is. Before min_iterations
    nothing diverges."""
    t = GateTracker(GateLimits())
    assert t.update("a", op(training_iteration=1, train_loss=0.5)) is None
    assert t.update("a", op(training_iteration=2, train_loss=10.0)) is None  # exactly 20× the best
    assert t.update("a", op(training_iteration=3, train_loss=10.5)).startswith("gate:diverging")
    t = GateTracker(GateLimits(min_iterations=3))
    assert t.update("a", op(training_iteration=1, train_loss=1.0)) is None
    assert t.update("a", op(training_iteration=2, train_loss=100.0)) is None  # before min_iterations
    assert t.update("a", op(training_iteration=3, train_loss=100.0)).startswith("gate:diverging")


def test_default_gate_settings_stop_a_loss_21_times_its_best() -> None:
    """TrainGateCfg's divergence_factor is 20: a larger default let a 21× blow-up of the loss train on."""
    limits = GateLimits.from_baseline(TrainGateCfg(), None)
    assert limits.divergence_factor == 20.0
    t = GateTracker(limits)
    assert t.update("a", op(training_iteration=1, train_loss=1.0)) is None
    assert t.update("a", op(training_iteration=2, train_loss=21.0)).startswith("gate:diverging")


def test_the_compute_budget_stops_the_sweep_once_spent_exactly() -> None:
    s = ComputeBudgetStopper(10)
    assert s("a", {"time_this_iter_s": 9.5}) is False and not s.stop_all()
    s("b", {"time_this_iter_s": 0.5})  # 10 s spent of 10
    assert s.stop_all()
    assert ComputeBudgetStopper(10, spent_s=10.0).stop_all()  # a resumed sweep that had spent it all
