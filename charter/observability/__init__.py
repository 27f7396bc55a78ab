"""Observability: JSON logs with correlation ids, Prometheus metrics, health checks."""
