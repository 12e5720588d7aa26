"""Per-user quotas on uploads (SPEC §8: no one user can take the service from the others),
checked by the upload handler before a byte of the body is stored:

- Uploads in flight: at most LONG_TASK_QUOTA_CONCURRENT_UPLOADS request bodies of one user
  streaming in at once (429 past it). Each takes a slot, a key in Django's cache taken with
  `cache.add` (atomic in every backend, shared by the web's processes when they share a cache);
  the slot lives while the body arrives and runs out on its own if its process dies. The 429
  says to try again in UPLOAD_RETRY_SECONDS (Retry-After): when an upload in flight ends cannot
  be known, but it frees its slot at once, so a short wait is the way forward.
- Stored bytes: the files kept for the user's operations (uploads, exports) together at most
  LONG_TASK_QUOTA_STORED_BYTES; an upload that would go over is refused (413) before it is
  read, or cut off where it goes over. Two uploads in flight at once are each measured against
  what was stored when they began. This 413 has no Retry-After: stored bytes are not freed by
  waiting, only by terminating operations (or, for finished ones, when retention ends), which
  its message says.

0 turns either off. Anonymous callers (LONG_TASK_ALLOW_ANONYMOUS) share one owner: nobody.
"""

import time
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db.models import Sum

from long_task_shared import humanize
from operations.errors import QuotaExceeded, TooLarge
from operations.models import Operation, ResumableUpload

# A slot lives this long past the last chunk of its body; kept alive while the chunks arrive.
SLOT_SECONDS = 60.0
# What the 429 of an owner with every upload slot taken asks a client to wait before it retries.
UPLOAD_RETRY_SECONDS = 10


class UploadSlot:
    """One of an owner's uploads in flight, until `release` (or until it runs out)."""

    def __init__(self, key: str, token: str):
        self.key, self.token = key, token
        self.kept_at = time.monotonic()

    def keep(self) -> None:
        """The body is still arriving: keep the slot (a cache write every third of its life)."""
        if self.key and time.monotonic() - self.kept_at > SLOT_SECONDS / 3:
            self.kept_at = time.monotonic()
            cache.touch(self.key, SLOT_SECONDS)

    def release(self) -> None:
        """Free the slot (unless it ran out and is another upload's now)."""
        if self.key and cache.get(self.key) == self.token:
            cache.delete(self.key)
        self.key = ""


def owner_of(user):
    """The owner an upload counts against: the user, or None for an anonymous caller."""
    return user if user is not None and user.is_authenticated else None


def take_upload_slot(owner) -> UploadSlot:
    """One of the owner's LONG_TASK_QUOTA_CONCURRENT_UPLOADS slots; QuotaExceeded (429) when
    every one is taken."""
    limit = settings.LONG_TASK_QUOTA_CONCURRENT_UPLOADS
    if limit <= 0:
        return UploadSlot("", "")
    ident = f"user{owner.pk}" if owner is not None else "anonymous"
    token = uuid.uuid4().hex
    for number in range(limit):
        key = f"long-task:uploads:{ident}:{number}"
        if cache.add(key, token, timeout=SLOT_SECONDS):
            return UploadSlot(key, token)
    raise QuotaExceeded(
        f"You have {limit} uploads in progress, the most at once; try again when one has finished",
        retry_after=UPLOAD_RETRY_SECONDS,
    )


def stored_bytes(owner) -> int:
    """The bytes of the files kept for the owner's operations, and of its resumable uploads (as
    long as they were declared: what they will take)."""
    kept = Operation.objects.filter(owner=owner).exclude(file="")
    uploads = ResumableUpload.objects.of(owner)
    total = kept.aggregate(total=Sum("file_size"))["total"] or 0
    return total + (uploads.aggregate(total=Sum("length"))["total"] or 0)


def stored_bytes_left(owner) -> int | None:
    """What the owner may still store (None: no quota); TooLarge (413) when nothing is left."""
    quota = settings.LONG_TASK_QUOTA_STORED_BYTES
    if quota <= 0:
        return None
    left = quota - stored_bytes(owner)
    if left <= 0:
        raise TooLarge(stored_bytes_message(owner))
    return left


def stored_bytes_message(owner) -> str:
    quota = settings.LONG_TASK_QUOTA_STORED_BYTES
    return (
        f"This file would take your stored files over your quota of {quota} bytes "
        f"({humanize.size(quota)}; {stored_bytes(owner)} bytes are stored now): terminating a paused or "
        "failed operation deletes its file, and finished operations' files are deleted when retention ends"
    )
