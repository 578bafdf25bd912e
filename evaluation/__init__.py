"""Metrics, registered in utils.registry.METRICS."""
