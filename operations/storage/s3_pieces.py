"""A file stored in pieces on S3 (see `resumable`): one multipart upload, whose parts are sent
as they fill, and the tail (the bytes that do not fill a part yet) in an object of its own. A
piece's parts are numbered after the recorded ones: a piece refused leaves parts that the next
piece sends again under the same numbers (S3 keeps the last one sent), and that completing or
aborting the upload drops."""

import contextlib
import logging
import mmap
import uuid
from dataclasses import replace

from django.conf import settings

from operations.storage.multipart import _View
from operations.storage.s3 import S3Store, _delete
from operations.storage.s3_client import S3Objects, content_type
from operations.storage.stored_pieces import PieceWriter, StoredPieces

logger = logging.getLogger(__name__)

# S3's least part, but for the last one of an object.
MIN_PART_BYTES = 5 * 1024**2


def supports(backend) -> bool:
    return isinstance(backend, S3Store)


def _objects() -> S3Objects:
    from operations import storage

    return storage.backend().objects


def begin(name: str) -> StoredPieces:
    objects = _objects()
    key = objects.key(name)
    created = objects.retrying(
        f"storing {name}",
        lambda: objects.client.create_multipart_upload(Bucket=objects.bucket, Key=key, ContentType=content_type(name)),
    )
    return StoredPieces(name=name, multipart_id=created["UploadId"])


def _read_tail(objects: S3Objects, pieces: StoredPieces) -> bytes:
    if not pieces.tail_name:
        return b""
    key = objects.key(pieces.tail_name)
    answer = objects.retrying(
        f"reading {pieces.tail_name}", lambda: objects.client.get_object(Bucket=objects.bucket, Key=key)
    )
    return answer["Body"].read()


def _send_part(objects: S3Objects, pieces: StoredPieces, number: int, data) -> dict:
    key = objects.key(pieces.name)
    sent = objects.retrying(
        f"storing {pieces.name} (part {number})",
        lambda: objects.client.upload_part(
            Bucket=objects.bucket, Key=key, UploadId=pieces.multipart_id, PartNumber=number, Body=data
        ),
    )
    entry = {"PartNumber": number, "ETag": sent["ETag"]}
    entry.update({k: v for k, v in sent.items() if k.startswith("Checksum") and k != "ChecksumType"})
    return entry


class S3PieceWriter(PieceWriter):
    """The tail read back first, then the piece: every full part is sent at once. What is left
    at the end of the piece is sent as a part too when S3 takes it (5 MiB or more, or the last
    bytes of the file), and else becomes the new tail (an object under a new name, so that the
    recorded one stays valid until the new state is recorded). A piece whose size is known
    (`piece_bytes`) ends in a part of its own, a little longer than the others rather than
    leaving a tail to store, read back and send again with the next piece. Memory: one part
    and 5 MiB."""

    def __init__(self, pieces: StoredPieces, *, length: int, piece_bytes: int | None = None):
        self.objects = _objects()
        self.pieces, self.length, self.piece_bytes = pieces, length, piece_bytes
        self.written = 0
        self.new_parts: list[dict] = []
        self.new_tail = ""
        self.part_bytes = settings.LONG_TASK_S3_PART_BYTES
        self.buffer = mmap.mmap(-1, self.part_bytes + MIN_PART_BYTES)
        tail = _read_tail(self.objects, pieces)
        self.buffer[: len(tail)] = tail
        self.filled = len(tail)
        self.limit = self.part_bytes

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = min(len(view), self.limit - self.filled)
            self.buffer[self.filled : self.filled + n] = view[:n]
            self.filled += n
            self.written += n
            view = view[n:]
            if self.filled == self.limit:
                self._part_filled()

    def _part_filled(self) -> None:
        rest = None if self.piece_bytes is None else self.piece_bytes - self.written
        if self.limit == self.part_bytes and rest is not None and 0 < rest < MIN_PART_BYTES:
            self.limit += rest  # the piece's last bytes go with this part, not to a tail
            return
        self._send_part()
        self.limit = self.part_bytes

    def _send_part(self) -> None:
        number = len(self.pieces.parts) + len(self.new_parts) + 1
        with memoryview(self.buffer) as view:
            part = view[: self.filled]
            self.new_parts.append(_send_part(self.objects, self.pieces, number, _View(part)))
            part.release()
        self.filled = 0

    def commit(self) -> StoredPieces:
        if not self.written:
            self._close()
            return self.pieces
        size = self.pieces.size + self.written
        if self.filled >= MIN_PART_BYTES or (self.filled and size == self.length):
            self._send_part()  # S3's least, or the file's last part
        elif self.filled:
            self.new_tail = f"{self.pieces.name}.tail-{uuid.uuid4().hex}"
            data = bytes(self.buffer[: self.filled])
            self.objects.retrying(f"storing {self.new_tail}", lambda: self.objects.put(self.new_tail, data))
        self._close()
        return replace(
            self.pieces,
            size=size,
            parts=[*self.pieces.parts, *self.new_parts],
            tail_name=self.new_tail,
        )

    def rollback(self) -> None:
        self._close()
        if self.new_tail:
            _forget(self.objects, self.new_tail)

    def settle(self) -> None:
        if self.written and self.pieces.tail_name:
            _forget(self.objects, self.pieces.tail_name)

    def _close(self) -> None:
        with contextlib.suppress(BufferError):
            self.buffer.close()


def finish(pieces: StoredPieces) -> None:
    """The tail as the last part (an empty one for an empty file), then the object."""
    objects = _objects()
    parts = list(pieces.parts)
    if pieces.tail_name or not parts:
        parts.append(_send_part(objects, pieces, len(parts) + 1, _read_tail(objects, pieces)))
    key = objects.key(pieces.name)
    try:
        objects.retrying(
            f"storing {pieces.name}",
            lambda: objects.client.complete_multipart_upload(
                Bucket=objects.bucket, Key=key, UploadId=pieces.multipart_id, MultipartUpload={"Parts": parts}
            ),
        )
    except objects.ClientError as exc:
        # Completed by an earlier try whose answer was lost (its upload id is gone, its object
        # is there): done. Anything else is the store's error.
        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload" or not _exists(objects, key):
            raise
    if pieces.tail_name:
        _forget(objects, pieces.tail_name)


def _exists(objects: S3Objects, key: str) -> bool:
    try:
        objects.client.head_object(Bucket=objects.bucket, Key=key)
    except objects.ClientError:
        return False
    return True


def discard(pieces: StoredPieces) -> None:
    objects = _objects()
    if pieces.multipart_id:
        key = objects.key(pieces.name)
        with contextlib.suppress(objects.ClientError):  # already completed or aborted
            objects.retrying(
                f"aborting {pieces.name}",
                lambda: objects.client.abort_multipart_upload(
                    Bucket=objects.bucket, Key=key, UploadId=pieces.multipart_id
                ),
            )
    if pieces.tail_name:
        _forget(objects, pieces.tail_name)
    _forget(objects, pieces.name)


def _forget(objects: S3Objects, name: str) -> None:
    """Delete an object that only takes room (an old tail, at most one part): a failure is
    logged, not the request's."""
    try:
        _delete(objects, name)
    except Exception as exc:
        logger.warning("file store: could not delete %s: %s", name, exc)
