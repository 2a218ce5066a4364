"""The sweep engine: Ray Tune + ASHA + Optuna, physics gates, leaderboard, promotion (imports Ray).

Entry point: ``ups.tune.launcher.run_round`` (used by ``sweeps/*.py`` and ``ups sweep``). It runs
``prepare`` (every check before ``ray.init``), ``ray_session`` (the address check, ``ray.init``, how many trials
run at once), ``tuner_build`` (searcher, scheduler, stoppers, the ``Tuner``), then Tune, the leaderboard rows and
promotion, and ends with ``summary`` (the ``SweepOutcome`` and its printed table).
Ray-free parts: ``sweep_config`` (settings/overrides), ``space`` (search-space files) and
``pbt_schedule`` (a PBT trial's schedule from Ray's policy files).
"""
