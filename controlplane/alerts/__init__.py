"""Alerts: breaker-aware rules evaluated over the durable history, delivered once."""
