"""S3, or any S3-compatible store (`LONG_TASK_STORAGE_URL=s3://bucket/prefix`): django-storages'
S3 backend for its configuration, with calls of its own where memory and the bytes fetched
matter: reads are ranged GETs from the position sought (`RangedReader`), streams are stored as
multipart uploads (`MultipartWriter`), and an upload streams into its object as it arrives
(`ObjectUpload`). A worker's calls retry transient errors (`S3Objects.retrying`); a web
request's wait a bounded time and are tried once (`deadline`)."""

import io
import logging
import threading
from typing import BinaryIO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from operations.storage import deadline
from operations.storage.base import FileStore
from operations.storage.errors import StorageUnavailable
from operations.storage.multipart import MultipartWriter
from operations.storage.ranged_reader import RangedReader
from operations.storage.s3_client import S3Objects

logger = logging.getLogger(__name__)


class S3Store(FileStore):
    """The file store on django-storages' S3 storage `storage`."""

    def __init__(self, storage):
        super().__init__(storage)
        self._patient = S3Objects(storage)
        self._web: S3Objects | None = None
        self._lock = threading.Lock()

    @property
    def objects(self) -> S3Objects:
        """The S3 calls as the caller may make them: a worker's are retried, a web request's
        wait LONG_TASK_STORE_WEB_DEADLINE_SECONDS at most and are tried once (their own
        client, made on the first request)."""
        if deadline.current() is None:
            return self._patient
        seconds = settings.LONG_TASK_STORE_WEB_DEADLINE_SECONDS
        web = self._web
        if web is None or web.web_deadline != seconds:
            with self._lock:
                web = self._web
                if web is None or web.web_deadline != seconds:
                    web = self._web = S3Objects(self.storage, web_deadline=seconds)
        return web

    def open_for_reading(self, name: str, *, block_size: int | None = None, read_ahead: bool = False) -> BinaryIO:
        """Ranged GETs of `block_size` (default `LONG_TASK_S3_READ_BYTES`) from the position
        sought; `read_ahead` (if `LONG_TASK_S3_READ_AHEAD`): the next block is fetched in a
        thread while this one is used."""
        block = block_size or settings.LONG_TASK_S3_READ_BYTES
        ahead = read_ahead and settings.LONG_TASK_S3_READ_AHEAD
        raw = RangedReader(self.objects, name, block_size=block, read_ahead=ahead)
        return io.BufferedReader(raw, buffer_size=block)

    def save(self, name: str, content: bytes | BinaryIO) -> str:
        """Bytes: one PUT. A stream: a multipart upload, one part in memory; aborted if the
        stream fails."""
        objects = self.objects
        if isinstance(content, bytes):
            objects.retrying(f"storing {name}", lambda: objects.put(name, content))
            return name
        writer = MultipartWriter(objects, name)
        try:
            while data := content.read(settings.LONG_TASK_S3_PART_BYTES):
                writer.write(data)
            writer.complete()
        except BaseException:
            writer.abort()
            raise
        return name

    def delete(self, name: str) -> None:
        _delete(self.objects, name)

    def listdir(self, directory: str) -> list[str]:
        objects = self.objects
        prefix = objects.key(directory).rstrip("/") + "/"

        def names() -> list[str]:
            pages = objects.client.get_paginator("list_objects_v2").paginate(
                Bucket=objects.bucket, Prefix=prefix, Delimiter="/"
            )
            return [item["Key"][len(prefix) :] for page in pages for item in page.get("Contents", ())]

        return objects.retrying(f"listing {directory}", names)

    def upload_target(
        self, name: str, *, file_name: str, content_type: str, charset: str | None, content_type_extra: dict | None
    ) -> UploadedFile:
        """A multipart upload into the object `name` itself: nothing on the web's disk."""
        return ObjectUpload(self, name, file_name, content_type, charset, content_type_extra)

    def store_upload(self, upload: UploadedFile, name: str) -> str:
        """An `ObjectUpload` is already its object, kept under the name it was given (S3 has no
        rename): `name` is not used."""
        if isinstance(upload, ObjectUpload):
            return upload.keep()
        return super().store_upload(upload, name)


class ObjectUpload(UploadedFile):
    """A request's file streamed into its S3 object as it arrives (a `MultipartWriter`): no
    copy on the web's disk, memory one part. The request keeps the object only if an operation
    takes it (`keep`, through `store_upload`); otherwise closing it (Django closes a request's
    files when the response is done) deletes it, and an upload never finished is aborted."""

    def __init__(self, store: S3Store, name: str, file_name, content_type, charset, content_type_extra):
        # The calls of the request that receives it, its clean-up after the response included.
        self._objects = store.objects
        self._writer = MultipartWriter(self._objects, name)
        super().__init__(None, file_name, content_type, 0, charset, content_type_extra)
        self.stored_name = name
        self._kept = False
        self._discarded = False
        self._closed = False

    def write(self, data: bytes) -> None:
        if not self._discarded:
            self._writer.write(data)

    def finish(self, size: int) -> None:
        self.size = size
        if not self._discarded:
            self._writer.complete()

    def discard(self) -> None:
        """Refused while it arrives (not text, too large): abort now, store nothing more."""
        self._discarded = True
        self._writer.abort()

    @property
    def finished(self) -> bool:
        return self._writer.completed

    def keep(self) -> str:
        if not self._writer.completed:
            logger.error("file store: the upload %s was not stored", self.stored_name)
            raise StorageUnavailable()
        self._kept = True
        return self.stored_name

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._kept:
            return
        if not self._writer.completed:
            self.discard()
            return
        try:
            _delete(self._objects, self.stored_name)
        except Exception as exc:
            logger.warning("file store: could not delete the refused upload %s: %s", self.stored_name, exc)


def _delete(objects: S3Objects, name: str) -> None:
    key = objects.key(name)
    objects.retrying(f"deleting {name}", lambda: objects.client.delete_object(Bucket=objects.bucket, Key=key))
