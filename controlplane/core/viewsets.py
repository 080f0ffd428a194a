"""Base ViewSets of every app's API.

Authentication (personal API token, then session), the error shape and filtering come
from ``REST_FRAMEWORK`` in settings; these bases add the bounded page-number
pagination and per-action permissions: a subclass declares ``action_permissions``,
and an action it does not name is refused (403) for everyone.
"""

from rest_framework import mixins, viewsets
from rest_framework.pagination import BasePagination

from controlplane.core.pagination import PageNumberPagination
from controlplane.core.permissions import ActionPermissionsMixin

# Primary keys are integers: anything else under a collection is no route (404), never a
# query with a bad value.
ID_PATTERN = "[0-9]{1,18}"


class ReadOnlyViewSet(ActionPermissionsMixin, viewsets.ReadOnlyModelViewSet):
    """``list`` and ``retrieve`` only; every write method is 405."""

    pagination_class: type[BasePagination] | None = PageNumberPagination
    lookup_value_regex = ID_PATTERN


class ReadWriteViewSet(
    ActionPermissionsMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.ReadOnlyModelViewSet,
):
    """``list``, ``retrieve``, ``create``, ``update``, ``partial_update``, ``destroy``."""

    pagination_class = PageNumberPagination
    lookup_value_regex = ID_PATTERN
