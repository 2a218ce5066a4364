"""Cloud side of UPS Sweeps: S3 storage for Tune state and data, cluster.yaml checks.

Modules import boto3 / pyarrow / Ray lazily so ``import ups.cloud`` stays cheap.
"""
