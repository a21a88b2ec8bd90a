"""batch-exporter: Prometheus exporter for critical batch jobs."""

__version__ = "0.1.0"
