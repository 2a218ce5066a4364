"""The sweep engine: Ray Tune + ASHA + Optuna, physics gates, leaderboard, promotion (imports Ray).

Entry point: ``ups.tune.launcher.run_round`` (used by ``sweeps/*.py`` and ``ups sweep``).
Ray-free parts: ``sweep_config`` (settings/overrides) and ``space`` (search-space files).
"""
