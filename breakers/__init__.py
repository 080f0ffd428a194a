"""Fast, correct circuit breakers for sync and asyncio code, steerable remotely.

from breakers import CircuitBreaker, CircuitBreakerConfig

feature_store = CircuitBreaker("feature_store", CircuitBreakerConfig(timeout=30))
features = feature_store.call(fetch_features, fallback=default_features)
"""

from . import clock  # the clock origin is taken when the library is imported
from .breaker import CallEvent, CircuitBreaker, TransitionEvent
from .config import WIRE_FIELDS, CircuitBreakerConfig, config_errors
from .errors import BreakerError, CircuitOpenError
from .registry import CircuitBreakerRegistry, circuit_registry, default_registry
from .states import CircuitState, TransitionReason

__version__ = "0.1.0"

__all__ = [
    "WIRE_FIELDS",
    "BreakerError",
    "CallEvent",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerRegistry",
    "CircuitOpenError",
    "CircuitState",
    "TransitionEvent",
    "TransitionReason",
    "__version__",
    "circuit_registry",
    "clock",
    "config_errors",
    "default_registry",
]
