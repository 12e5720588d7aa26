"""Bytes written to one S3 object as a multipart upload, one part in memory (I7): how an upload
streams into its object as it arrives, and how an export's parts are joined."""

import contextlib
import io
import logging
import mmap
import weakref

from django.conf import settings

from operations.storage import deadline
from operations.storage.ranged_reader import ReadOnlyStream
from operations.storage.s3_client import S3Objects, content_type

logger = logging.getLogger(__name__)


class MultipartWriter:
    """Bytes written to one S3 object as a multipart upload: parts of `LONG_TASK_S3_PART_BYTES`
    (S3 wants at least 5 MiB but for the last), each sent as soon as it is full, one at a
    time, so memory holds one part. The object exists once `complete()` has returned; a writer
    aborted, or dropped before it completed, leaves nothing (not even the parts, which S3 would
    keep and bill until an abort)."""

    def __init__(self, objects: S3Objects, name: str):
        self.objects, self.name, self.key = objects, name, objects.key(name)
        self.size = 0
        self.completed = False
        self._parts: list[dict] = []
        # The part being filled, outside malloc's heaps: an anonymous mapping is given back to
        # the system when closed, whatever thread allocated it. (A bytearray of the web's
        # request thread would stay in that thread's malloc arena, and a server's threads
        # would each keep one: memory growing with the uploads, not bounded by one part.)
        self._buffer = mmap.mmap(-1, settings.LONG_TASK_S3_PART_BYTES)
        self._filled = 0
        created = objects.retrying(
            f"storing {name}",
            lambda: objects.client.create_multipart_upload(
                Bucket=objects.bucket, Key=self.key, ContentType=content_type(name)
            ),
        )
        self.upload_id = created["UploadId"]
        # The last resort for a writer nobody aborted (a request that died half-way): abort it
        # when it is garbage-collected. A process killed outright leaves the parts to the
        # bucket's AbortIncompleteMultipartUpload rule (docs/deployment.md).
        self._abort = weakref.finalize(self, _abort_multipart, objects, self.key, self.upload_id)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = min(len(view), len(self._buffer) - self._filled)
            self._buffer[self._filled : self._filled + n] = view[:n]
            self._filled += n
            self.size += n
            view = view[n:]
            if self._filled == len(self._buffer):
                self._send_part()

    def _send_part(self) -> None:
        number = len(self._parts) + 1
        objects = self.objects
        with memoryview(self._buffer) as view:
            part = view[: self._filled]
            sent = objects.retrying(
                f"storing {self.name} (part {number})",
                lambda: objects.client.upload_part(
                    Bucket=objects.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=_View(part)
                ),
            )
            part.release()
        self._filled = 0
        entry = {"PartNumber": number, "ETag": sent["ETag"]}
        entry.update(
            {key: value for key, value in sent.items() if key.startswith("Checksum") and key != "ChecksumType"}
        )
        self._parts.append(entry)

    def complete(self) -> None:
        if self._filled or not self._parts:
            self._send_part()  # the last part may be short (or empty, for an empty file)
        self._release()
        objects = self.objects
        objects.retrying(
            f"storing {self.name}",
            lambda: objects.client.complete_multipart_upload(
                Bucket=objects.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self._parts}
            ),
        )
        self.completed = True
        self._abort.detach()

    def abort(self) -> None:
        """Give the upload up: S3 drops the parts sent so far. Once only; not after complete."""
        self._release()
        self._abort()

    def _release(self) -> None:
        with contextlib.suppress(BufferError):  # a view still held by a failed request: the GC's
            self._buffer.close()


class _View(ReadOnlyStream):
    """A part's bytes as a read-only, seekable file, without a copy (botocore takes bytes,
    bytearrays or files, not memoryviews)."""

    def __init__(self, view: memoryview):
        super().__init__()
        self._view, self._position = view, 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), len(self._view) - self._position))
        buffer[:n] = self._view[self._position : self._position + n]
        self._position += n
        return n


def _abort_multipart(objects: S3Objects, key: str, upload_id: str) -> None:
    request = deadline.current()
    if objects.web_deadline is not None and request is not None and request.failed:
        # A web request waits for a store that did not answer it once only.
        logger.warning("file store: the multipart upload of %s is left to the bucket's lifecycle rule", key)
        return
    try:
        objects.client.abort_multipart_upload(Bucket=objects.bucket, Key=key, UploadId=upload_id)
    except Exception as exc:  # the bucket's lifecycle rule is the last word (docs/deployment.md)
        logger.warning("file store: could not abort the multipart upload of %s: %s", key, exc)
