"""Shared fixtures: each fixture module is owned by the part of the project it serves."""
import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

pytest_plugins = [
    "tests.fixtures.ray_cluster",
    "tests.fixtures.data",
    "tests.fixtures.s3",
    "tests.fixtures.reports",
]
