"""Sweep reports: HTML report with plots, round comparison, champion export and model card.

Ray-free: experiment folders written by Ray Tune are read as plain files (``experiment.py``).
Entry points: ``ups.reports.html.write_report`` (called by the sweep engine), ``ups report``
(``cli.py``) and ``ups export champion`` (``export.py``).
"""
