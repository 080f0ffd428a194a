"""Circuits: services, instances, circuits, config versions, overrides and their history."""
