"""API tokens for machines: created and revoked by staff in the admin, stored only as a SHA-256 hash."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class TokenScope(models.TextChoices):
    # Reads only: a read token can never trigger a recovery or acknowledge an alert.
    READ = "read", "Read"
    # Reads and writes; writes also need the token's user to be staff.
    WRITE = "write", "Read and write"


class ApiToken(models.Model):
    """One machine credential. The key is shown once at creation; afterwards only its prefix is known."""

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=8, choices=TokenScope.choices, default=TokenScope.READ)
    # The token acts as this user (whose staff flag still gates writes at every request).
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    # The first characters of the key, enough to tell tokens apart in logs and the admin.
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.CharField(max_length=150, blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.CharField(max_length=150, blank=True, default="", editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"
        constraints = [
            models.CheckConstraint(condition=Q(scope__in=["read", "write"]), name="api_token_scope_known"),
        ]

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else self.scope
        return f"{self.name} ({self.prefix}…, {state})"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class LoopHeartbeat(models.Model):
    """The latest successful pass of one long-running loop in one process: who runs, who is active, since when.

    Written by the loop runner at most once a second per loop; a replica standing by writes nothing.
    """

    name = models.CharField(max_length=64)
    replica = models.CharField(max_length=128)  # host:pid
    started_at = models.DateTimeField()
    last_pass_at = models.DateTimeField()
    passes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "replica"], name="heartbeat_one_per_replica")]

    def __str__(self) -> str:
        return f"{self.name} on {self.replica}"


class RowCount(models.Model):
    """A change to a count kept by the writes (see ``controlplane.rowcounts``): a key's count is the sum of its rows."""

    key = models.CharField(max_length=200)
    n = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.key} {self.n:+d}"
