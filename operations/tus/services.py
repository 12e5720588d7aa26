"""Resumable uploads: create, append a piece, delete, expire, and hand a finished one over to an
operation. Only the request that holds an upload (`busy_token` until `busy_until`, taken by a
conditional UPDATE and kept alive while its body arrives) writes its bytes: a second PATCH on
the same upload meanwhile is refused (423) rather than interleaved.

The SHA-256 of the whole file is computed as the pieces arrive while they come to the same
process (`running_hash`), or else, when the last piece has arrived, by reading the stored file
back (`_finish`): a hash cannot be kept in the database between pieces (hashlib's objects can
neither be pickled nor rebuilt from a saved state; a resumable SHA-256 would mean a pure-Python
one, far too slow, or reaching into OpenSSL's structures), and pieces may reach any web process.
"""

import hashlib
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from operations import quotas, storage
from operations.errors import BadInput, Conflict, NotFound, OperationError, QuotaExceeded, TooLarge
from operations.models import Operation
from operations.storage import resumable
from operations.tus import pieces, protocol, running_hash
from operations.tus.models import ResumableUpload

# How long a PATCH holds its upload without a sign of life (blocks arriving).
HOLD_SECONDS = 60.0
HASH_BLOCK_BYTES = 4 * 1024**2


class Gone(OperationError):
    status_code = 410
    default_message = "This upload has expired and is being deleted: start a new one"


class Locked(OperationError):
    status_code = 423
    default_message = "Another request is sending a piece of this upload: try again when it has finished"


def _expiry():
    return timezone.now() + timedelta(seconds=settings.LONG_TASK_UPLOAD_EXPIRY)


def _stored(upload: ResumableUpload) -> resumable.StoredPieces:
    return resumable.StoredPieces(
        name=upload.stored_name,
        size=upload.offset,
        multipart_id=upload.multipart_id,
        parts=list(upload.parts or []),
        tail_name=upload.tail_name,
    )


def _check_caps(owner, length: int) -> None:
    limit = settings.LONG_TASK_MAX_UPLOAD_BYTES
    if length > limit:
        raise TooLarge(f"The file is larger than the upload limit of {limit} bytes")
    unfinished = ResumableUpload.objects.of(owner).unfinished()
    count = unfinished.count()
    if count >= settings.LONG_TASK_MAX_UNFINISHED_UPLOADS > 0:
        raise QuotaExceeded(
            f"You have {count} unfinished uploads (at most {settings.LONG_TASK_MAX_UNFINISHED_UPLOADS}): "
            "finish or delete some first, or wait until they expire"
        )
    cap = settings.LONG_TASK_MAX_UNFINISHED_UPLOAD_BYTES
    pending = unfinished.aggregate(total=Sum("length"))["total"] or 0
    if cap > 0 and pending + length > cap:
        raise TooLarge(
            f"Your unfinished uploads would take {pending + length} bytes, more than the {cap} allowed: "
            "finish or delete some first"
        )
    left = quotas.stored_bytes_left(owner)
    if left is not None and length > left:
        raise TooLarge(quotas.stored_bytes_message(owner))


def upload_create(*, user, length: int, metadata: str) -> ResumableUpload:
    """A new upload of `length` bytes, within the upload limit and the caller's caps (413, 429)."""
    owner = quotas.owner_of(user)
    name = protocol.file_name(protocol.metadata(metadata))
    _check_caps(owner, length)
    upload_id = uuid.uuid4()
    stored = resumable.begin(f"uploads/{upload_id.hex}.csv")
    try:
        return ResumableUpload.objects.create(
            id=upload_id,
            owner=owner,
            file_name=name,
            metadata=metadata,
            length=length,
            stored_name=stored.name,
            multipart_id=stored.multipart_id,
            expires_at=_expiry(),
        )
    except BaseException:
        resumable.discard(stored)
        raise


def upload_id_of(reference) -> uuid.UUID:
    """An upload's id from a parameter: the id, or the URL that ends with it."""
    last = str(reference).strip().rstrip("/").rsplit("/", 1)[-1]
    try:
        return uuid.UUID(last)
    except ValueError:
        raise BadInput("upload must be the id or the URL of one of your uploads (see /api/uploads/)") from None


def upload_progress(upload_id: str) -> dict | None:
    """What the status of an operation waiting for this upload shows of it (None: gone)."""
    return uploads_progress([upload_id]).get(upload_id)


def uploads_progress(upload_ids: list[str]) -> dict[str, dict]:
    """`upload_progress` of each upload that still exists, by id, in one query."""
    if not upload_ids:
        return {}
    uploads = ResumableUpload.objects.filter(pk__in=upload_ids).only("offset", "length", "completed_at")
    return {
        str(upload.pk): {
            "id": str(upload.pk),
            "bytes_received": upload.offset,
            "bytes_total": upload.length,
            "finished": upload.finished,
        }
        for upload in uploads
    }


def _tell_waiting_operations(upload: ResumableUpload) -> None:
    """A registered operation that waits for this upload has a new status (its progress): its
    `updated_at`, hence its ETag, changes, and long polls of it wake."""
    Operation.objects.filter(state=Operation.State.REGISTERED, options__upload=str(upload.pk)).update(
        updated_at=timezone.now()
    )


def upload_get(*, upload_id, user) -> ResumableUpload:
    """The caller's upload: 404 for none (another user's included), 410 once expired."""
    upload = ResumableUpload.objects.of(quotas.owner_of(user)).filter(pk=upload_id).first()
    if upload is None:
        raise NotFound("No such upload")
    if upload.expires_at < timezone.now():
        raise Gone()
    return upload


class Hold:
    """The request's hold on an upload, kept alive while its body arrives."""

    def __init__(self, upload: ResumableUpload):
        self.upload, self.token = upload, uuid.uuid4().hex
        now = timezone.now()
        free = Q(busy_token="") | Q(busy_until__lt=now)
        taken = ResumableUpload.objects.filter(free, pk=upload.pk).update(
            busy_token=self.token, busy_until=now + timedelta(seconds=HOLD_SECONDS)
        )
        if not taken:
            raise Locked()
        self.kept_at = time.monotonic()

    def mine(self):
        return ResumableUpload.objects.filter(pk=self.upload.pk, busy_token=self.token)

    def keep_alive(self) -> None:
        if time.monotonic() - self.kept_at < HOLD_SECONDS / 4:
            return
        if not self.mine().update(busy_until=timezone.now() + timedelta(seconds=HOLD_SECONDS)):
            raise Conflict("This upload was deleted or taken over by another request meanwhile")
        self.kept_at = time.monotonic()

    def record(self, **fields) -> None:
        if not self.mine().update(**fields):
            raise Conflict("This upload was deleted or taken over by another request meanwhile")
        for name, value in fields.items():
            setattr(self.upload, name, value)

    def release(self) -> None:
        self.mine().update(busy_token="", busy_until=None)


def upload_append(*, upload_id, user, offset: int, body, content_length: int | None, checksum) -> ResumableUpload:
    """Append the piece in `body` at `offset`, which must be the upload's offset (409). The
    upload finishes with its last byte (see `_finish`)."""
    upload = upload_get(upload_id=upload_id, user=user)
    _check_offset(upload, offset)
    hold = Hold(upload)
    try:
        upload.refresh_from_db()
        _check_offset(upload, offset)
        if upload.offset < upload.length or content_length:
            _append(hold, upload, body=body, content_length=content_length, checksum=checksum)
        if upload.offset == upload.length and not upload.finished:
            _finish(hold, upload)
    finally:
        hold.release()
    return upload


def _check_offset(upload: ResumableUpload, offset: int) -> None:
    if offset != upload.offset:
        raise Conflict(
            f"Upload-Offset is {offset} but the upload has {upload.offset} bytes: "
            "send the piece from there (HEAD says where an upload stands)"
        )


def _append(hold: Hold, upload: ResumableUpload, *, body, content_length, checksum) -> None:
    running = running_hash.take(upload.pk, upload.offset)
    try:
        received = pieces.receive(
            body=body,
            pieces=_stored(upload),
            length=upload.length,
            content_length=content_length,
            text_pending=bytes(upload.text_pending or b""),
            checksum=checksum,
            keep_alive=hold.keep_alive,
            running_hash=running,
        )
    except resumable.StoredBytesLost:
        if ResumableUpload.objects.filter(pk=upload.pk).delete()[0]:
            resumable.discard(_stored(upload))
        raise Gone("The stored bytes of this upload were lost (the server stopped): start a new upload") from None
    stored = received.pieces
    try:
        hold.record(
            offset=stored.size,
            parts=stored.parts,
            tail_name=stored.tail_name,
            text_pending=received.text_pending,
            expires_at=_expiry(),
        )
    except Conflict:
        received.writer.rollback()
        raise
    received.writer.settle()
    running_hash.keep(upload.pk, stored.size, running)
    _tell_waiting_operations(upload)


def _finish(hold: Hold, upload: ResumableUpload) -> None:
    """The last byte is in: one file in the store, and its SHA-256 (running, or read back: see
    above)."""
    stored = _stored(upload)
    resumable.finish(stored)
    sha256 = running_hash.take(upload.pk, upload.length)
    if sha256 is None:
        sha256 = hashlib.sha256()
        with storage.open_for_reading(stored.name, block_size=HASH_BLOCK_BYTES, read_ahead=True) as stored_file:
            while block := stored_file.read(HASH_BLOCK_BYTES):
                sha256.update(block)
                hold.keep_alive()
    hold.record(sha256=sha256.hexdigest(), completed_at=timezone.now(), tail_name="", parts=[])
    _tell_waiting_operations(upload)


def upload_delete(*, upload_id, user) -> None:
    """Termination: the record first (a PATCH in flight then stops), then the stored bytes."""
    upload = upload_get(upload_id=upload_id, user=user)
    running_hash.forget(upload.pk)
    if ResumableUpload.objects.filter(pk=upload.pk).delete()[0]:
        resumable.discard(_stored(upload))


def upload_take(*, upload_id, user) -> ResumableUpload:
    """A finished upload of the caller, to start an operation with (404 for none, 409 while
    unfinished). `take_over` then hands its file over."""
    upload = upload_get(upload_id=upload_id, user=user)
    if not upload.finished and upload.offset == upload.length:
        # Every byte came but finishing failed (the store did not answer): finish it now.
        hold = Hold(upload)
        try:
            _finish(hold, upload)
        finally:
            hold.release()
    if not upload.finished:
        raise Conflict(
            f"The upload has {upload.offset} of {upload.length} bytes: send the rest first "
            "(an upload starts an operation once it is complete)"
        )
    return upload


def take_over(upload: ResumableUpload) -> str:
    """The upload's file becomes the caller's (an operation's): the record goes, the stored file
    stays where it is. 409 if another request took it first."""
    with transaction.atomic():
        taken = ResumableUpload.objects.filter(pk=upload.pk, completed_at__isnull=False, busy_token="").delete()[0]
    if not taken:
        raise Conflict("This upload was taken by another request, or deleted")
    return upload.stored_name


def upload_drop(upload: ResumableUpload) -> None:
    """Delete a finished upload that was only compared (a resume's same-file check)."""
    if ResumableUpload.objects.filter(pk=upload.pk, busy_token="").delete()[0]:
        storage.delete(upload.stored_name)


def sweep_expired(*, batch: int = 200) -> int:
    """Delete the uploads past their expiry (unfinished, or finished and never taken), their
    stored bytes with them (S3: the multipart upload aborted). Returns how many."""
    now = timezone.now()
    free = Q(busy_token="") | Q(busy_until__lt=now)
    deleted = 0
    for upload in ResumableUpload.objects.filter(free, expires_at__lt=now)[:batch]:
        # The database first: bytes whose deletion fails are an orphan, never a dangling record.
        if not ResumableUpload.objects.filter(free, pk=upload.pk, expires_at__lt=now).delete()[0]:
            continue
        if upload.finished:
            storage.delete(upload.stored_name)
        else:
            resumable.discard(_stored(upload))
        deleted += 1
    return deleted
