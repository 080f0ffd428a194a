"""Breakers where applications already make their calls, each behind an optional extra
so that ``breakers`` itself stays dependency-free:

- ``breakers.integrations.httpx``: sync and async httpx transports
  (``pip install "switchyard-breakers[httpx]"``);
- ``breakers.integrations.requests``: an adapter mounted on a requests Session
  (``pip install "switchyard-breakers[requests]"``);
- ``breakers.integrations.aiohttp``: a client middleware for aiohttp sessions
  (``pip install "switchyard-breakers[aiohttp]"``);
- ``breakers.integrations.opentelemetry``: metrics and span events
  (``pip install "switchyard-breakers[otel]"``);
- ``breakers.integrations.adopt``: pybreaker and circuitbreaker breakers reported and
  steered without a rewrite;
- ``breakers.integrations.asgi``: ASGI middleware serving ``/health/circuits`` and
  running the agent with the application's lifespan (standard library only);
- ``breakers.integrations.celery``: tasks whose body runs through a breaker, and the
  agent in every worker process (``pip install "switchyard-breakers[celery]"``);
- ``breakers.integrations.django``: the same as Django middleware, configured from the
  ``SWITCHYARD`` setting or the environment.

The HTTP integrations share ``breakers.integrations.http``: which breaker guards a
request (its host, or a route rule) and which answers count as failures.
"""
