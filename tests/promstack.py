"""Test-side name for `batch_exporter.practice.stack` (the real Prometheus + Alertmanager on loopback).

The code lives in the package so that `batch-exporter demo --stack` and `batch-exporter drill` use the
same machinery as the tests; this module only re-exports it. `REPO_ROOT` here is the checkout the
tests run from.
"""
from __future__ import annotations

from pathlib import Path

from batch_exporter.practice.stack import (
    ALERTMANAGER_CONFIG,
    EXPORTER_JOB,
    PROMETHEUS_CONFIG,
    RULES_GLOB,
    MissingBinaryError,
    Notification,
    Overlay,
    PromStack,
    ShippedFiles,
    StackError,
    WebhookRecorder,
    alertmanager_config,
    find_binary,
    free_port,
    prepare_prometheus,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

__all__ = [
    "ALERTMANAGER_CONFIG",
    "EXPORTER_JOB",
    "PROMETHEUS_CONFIG",
    "REPO_ROOT",
    "RULES_GLOB",
    "MissingBinaryError",
    "Notification",
    "Overlay",
    "PromStack",
    "ShippedFiles",
    "StackError",
    "WebhookRecorder",
    "alertmanager_config",
    "find_binary",
    "free_port",
    "prepare_prometheus",
    "wait_until",
]
