"""The sweep engine: Ray Tune + ASHA + Optuna, physics gates, leaderboard, promotion (imports Ray).

Entry point: ``ups.tune.launcher.run_round`` (used by ``sweeps/*.py`` and ``ups sweep``).
Ray-free parts: ``sweep_config`` (settings/overrides), ``space`` (search-space files) and
``pbt_schedule`` (a PBT trial's schedule from Ray's policy files).
"""
