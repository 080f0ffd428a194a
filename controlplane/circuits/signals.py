"""Signals of the circuits app."""

from django.dispatch import Signal

#: Sent after the commit of every change of a service's desired state (force, release,
#: override expiry, new config version). Keyword arguments: service_id, desired_version.
desired_state_changed = Signal()
