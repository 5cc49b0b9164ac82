"""The monitoring tests' Prometheus is the session's one real Prometheus: the ``prometheus`` fixture of
tests/conftest.py (prometheus_support.py), shared with tests/metrics."""
