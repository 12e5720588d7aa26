"""The data model: an operation, its history, and what an Upload writes.

Only `operations.state_machine` writes `Operation.state` (through the services and the lease
protocol); only `operations.leases` writes the lease fields.
"""

from django.conf import settings
from django.db import models

from operations import access


class OperationQuerySet(models.QuerySet):
    def visible_to(self, user) -> "OperationQuerySet":
        """What `user` may see: its own, or everyone's with a permission (see `access`)."""
        if access.sees_all(user):
            return self
        if user is None or not user.is_authenticated:
            return self.filter(owner__isnull=True)
        return self.filter(owner=user)

    def active(self) -> "OperationQuerySet":
        """Operations that a worker holds or should hold."""
        return self.filter(state__in=Operation.State.active())

    def worked(self) -> "OperationQuerySet":
        """Operations that a worker holding a lease works on."""
        return self.filter(state__in=Operation.State.worked())

    def finished(self) -> "OperationQuerySet":
        return self.filter(state__in=Operation.State.final())


class Operation(models.Model):
    class State(models.TextChoices):
        # Created; nothing to work on yet.
        REGISTERED = "registered"
        # Waiting for a worker to claim it.
        QUEUED = "queued"
        # A worker holds the lease and commits chunks.
        RUNNING = "running"
        # Pause requested; the worker acknowledges at its next chunk boundary.
        PAUSING = "pausing"
        # Stopped at a checkpoint; consumes no worker time.
        PAUSED = "paused"
        # Every row done.
        COMPLETED = "completed"
        # Stopped by an error (kept in `error`); can be resumed or terminated.
        FAILED = "failed"
        # Terminate requested; a worker deletes what the operation wrote.
        TERMINATING = "terminating"
        # Rolled back: no rows, no stored file.
        TERMINATED = "terminated"

        # The groups of states, defined here once and used everywhere (tests included).

        @classmethod
        def active(cls) -> tuple[str, ...]:
            """A worker holds the operation or should: queued or worked."""
            return (cls.QUEUED, *cls.worked())

        @classmethod
        def worked(cls) -> tuple[str, ...]:
            """A worker holding a live lease is doing the operation's work (importing, or
            finishing a pause, or rolling back). Outside these states nobody holds a lease."""
            return (cls.RUNNING, cls.PAUSING, cls.TERMINATING)

        @classmethod
        def moving(cls) -> tuple[str, ...]:
            """The worker is making progress: the rate and the ETA mean something."""
            return (cls.RUNNING, cls.PAUSING)

        @classmethod
        def final(cls) -> tuple[str, ...]:
            """Nothing will ever change again."""
            return (cls.COMPLETED, cls.TERMINATED)

    op_type = models.CharField(max_length=64, default="Upload")
    state = models.CharField(max_length=16, choices=State.choices, default=State.REGISTERED)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="operations"
    )
    # What the operation type was started with, e.g. {"strict": true}.
    options = models.JSONField(default=dict, blank=True)

    # The stored input, under a server-chosen name.
    file = models.FileField(max_length=255, blank=True, default="")
    file_name = models.CharField(
        max_length=255, blank=True, default="", help_text="The client's file name, for display."
    )
    file_size = models.BigIntegerField(null=True, blank=True)
    file_sha256 = models.CharField(max_length=64, blank=True, default="")
    columns = models.JSONField(null=True, blank=True)

    # Checkpoint, written in the same transaction as the chunk it describes. The operation type
    # decides what the columns mean (for an Upload: bytes and data rows of its file) and keeps
    # whatever else it needs in `checkpoint`; the worker saves what the type returns.
    position = models.BigIntegerField(default=0, help_text="Where the type stands, e.g. a byte offset in the file.")
    lines_finished = models.BigIntegerField(default=0)
    lines_failed = models.BigIntegerField(default=0)
    total_lines = models.BigIntegerField(null=True, blank=True)
    checkpoint = models.JSONField(default=dict, blank=True, help_text="More of the type's checkpoint, if any.")
    rollback_position = models.BigIntegerField(default=0, help_text="Terminate: rows deleted up to this line.")
    rows_per_second = models.FloatField(null=True, blank=True)

    # Lease: which worker holds the operation, until when (renewed with every chunk).
    lease_owner = models.CharField(max_length=128, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OperationQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "lease_expires_at"], name="op_state_lease")]
        permissions = [("control_any_operation", "Can see, pause, resume and terminate every user's operations")]

    def __str__(self) -> str:
        return f"{self.op_type} #{self.pk} ({self.state})"


class OperationEvent(models.Model):
    """One transition: who made it, when, from which state to which."""

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=160, help_text="user:<name>, worker:<id> or system")
    from_state = models.CharField(max_length=16)
    to_state = models.CharField(max_length=16)
    detail = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.from_state} -> {self.to_state} by {self.actor}"


class UploadedRow(models.Model):
    """One accepted CSV data row. The primary key is the exactly-once guarantee (I1)."""

    pk = models.CompositePrimaryKey("operation_id", "line_number")
    # No index of its own: the primary key's leading column indexes operation_id. No database
    # constraint either: PostgreSQL checks one with a trigger per inserted row, which made
    # imports three times slower. Only the worker holding an operation's lease inserts its
    # rows, and deleting an operation through Django deletes them (on_delete).
    operation = models.ForeignKey(
        Operation, on_delete=models.CASCADE, db_index=False, db_constraint=False, related_name="rows"
    )
    line_number = models.BigIntegerField(help_text="1 = the first data row after the header.")
    data = models.JSONField()

    def __str__(self) -> str:
        return f"operation {self.operation_id} line {self.line_number}"


class RowError(models.Model):
    """A rejected CSV data row, kept so that the user can see what was skipped and why."""

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="row_errors")
    line_number = models.BigIntegerField()
    reason = models.CharField(max_length=255)
    raw = models.TextField(blank=True, default="", help_text="The row's text, truncated.")

    class Meta:
        ordering = ["line_number"]
        constraints = [
            models.UniqueConstraint(fields=["operation", "line_number"], name="row_error_once_per_line"),
        ]

    def __str__(self) -> str:
        return f"line {self.line_number}: {self.reason}"


class LoginCounter(models.Model):
    """Password checks of one key (a user name from a client address, or an address) in the
    window that ends at `window_ends`: in the database, which every web process shares (see
    operations.logins)."""

    key = models.CharField(max_length=80, primary_key=True)
    count = models.PositiveIntegerField(default=0)
    window_ends = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.key}: {self.count} until {self.window_ends}"


# Resumable uploads have their own home (operations/tus/); imported here so that the app has them.
from operations.tus.models import ResumableUpload  # noqa: E402, F401
