"""The record of a resumable upload (tus): what has arrived and where it is stored."""

import uuid

from django.conf import settings
from django.db import models


class ResumableUploadQuerySet(models.QuerySet):
    def of(self, user) -> "ResumableUploadQuerySet":
        """The uploads of `user` (anonymous callers, when allowed, share those of nobody): a
        user never sees another's upload, whatever its permissions."""
        if user is None or not user.is_authenticated:
            return self.filter(owner__isnull=True)
        return self.filter(owner=user)

    def unfinished(self) -> "ResumableUploadQuerySet":
        return self.filter(completed_at__isnull=True)


class ResumableUpload(models.Model):
    """An upload sent in pieces (tus 1.0). `offset` bytes of `length` are stored, and checked:
    `text_pending` holds the bytes of a UTF-8 sequence cut by the end of the last piece. The
    bytes are in the file store under `stored_name`; on S3 as the parts of the multipart upload
    `multipart_id` (`parts`) and, for what does not fill a part yet, the object `tail_name`.
    Only the PATCH holding the upload (`busy_token`, until `busy_until`) writes its bytes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="resumable_uploads"
    )
    file_name = models.CharField(max_length=255, blank=True, default="")
    # The client's Upload-Metadata, given back as it came (HEAD must return it).
    metadata = models.TextField(blank=True, default="")
    length = models.BigIntegerField()
    offset = models.BigIntegerField(default=0)
    text_pending = models.BinaryField(max_length=8, default=b"")
    stored_name = models.CharField(max_length=255)
    multipart_id = models.CharField(max_length=1024, blank=True, default="")
    parts = models.JSONField(default=list, blank=True)
    tail_name = models.CharField(max_length=255, blank=True, default="")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    busy_token = models.CharField(max_length=32, blank=True, default="")
    busy_until = models.DateTimeField(null=True, blank=True)

    objects = ResumableUploadQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["expires_at"]), models.Index(fields=["owner", "completed_at"])]

    def __str__(self) -> str:
        return f"upload {self.pk} ({self.offset}/{self.length} bytes)"

    @property
    def finished(self) -> bool:
        return self.completed_at is not None
