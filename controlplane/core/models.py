"""Abstract models every app may build on (no table of their own)."""

from django.db import models
from django.utils import timezone

# last_used_at is refreshed at most this often per token, to keep authenticated
# requests write-light.
LAST_USED_RESOLUTION_SECONDS = 60


class BearerToken(models.Model):
    """A bearer token stored as its sha256, told apart by its first characters.

    Subclasses add the owner (a service, a user) and their Meta (ordering, names).
    """

    label = models.CharField(max_length=100, blank=True)
    # First characters of the token, to tell tokens apart without storing them.
    prefix = models.CharField(max_length=12)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_active(self) -> bool:
        """Whether the token still authenticates."""
        return self.revoked_at is None

    def touch(self) -> None:
        """Record a use, writing at most once per LAST_USED_RESOLUTION_SECONDS."""
        now = timezone.now()
        last = self.last_used_at
        if last is None or (now - last).total_seconds() >= LAST_USED_RESOLUTION_SECONDS:
            type(self)._default_manager.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now
