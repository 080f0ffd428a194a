"""The agents' sync, in one place: ``POST /api/v1/agent/sync`` walked once.

* :mod:`.wire` -- the request's types, msgspec structs that are also the parsed value;
* :mod:`.parse` -- bytes to a :class:`.wire.Sync`, or a :class:`SyncError` naming the
  field and the reason (the project's one error shape);
* :mod:`.store` -- the only writer of instances, snapshots and transitions: many syncs
  in one transaction (group commit), a flush starting as soon as the previous one
  committed;
* :mod:`.answer` -- the service's desired state with ``acked_through`` and the limits;
* :mod:`.route` -- the route, on the event loop under ASGI (ahead of Django's middleware)
  and as a plain Django view elsewhere: parse -> store -> answer in both.
"""
