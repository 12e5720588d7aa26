"""The file store: local disk by default, S3 or any S3-compatible store by configuration
(`LONG_TASK_STORAGE_URL=s3://bucket/prefix`, SPEC §11). Operation types, the upload handler and
the download view go through the functions of this module, which keep I7 (memory does not grow
with the file) and I8 (a resume reads from the checkpoint's byte offset, nothing before it):

- `open_for_reading(name, block_size=, read_ahead=)`: a seekable binary file.
- `save(name, content)`: bytes or a stream, stored under `name`.
- `delete(name)`, `listdir(directory)`, `exists(name)`.
- `upload_target(name, ...)` and `store_upload(upload, name)`: where the upload handler streams
  a request's file, and how an operation keeps it.

Names are the callers' (`uploads/<op>-<uuid>.csv`, `exports/<op>/<line>-<uuid>.part`): the store
adds its location and keeps them as given, the extension included.

Each function runs on the backend for `settings.STORAGES["default"]` (`backend()`), chosen once
per configured storage:

- `local.LocalDiskStore`: Django's FileSystemStorage; reads open the file itself, an upload is
  spooled next to the media root and renamed into place.
- `s3.S3Store`: django-storages' S3 backend; ranged GETs from the position sought
  (`ranged_reader`), streams stored as multipart uploads (`multipart`), an upload streamed into
  its object as it arrives; its client and retry policy in `s3_client`. Transient errors are
  retried, `LONG_TASK_STORAGE_RETRIES` times; then `StorageUnavailable`, which fails the
  operation like any error a worker cannot get past (resume it once the store is back).
- `base.FileStore`: any other Django storage backend, through Django's storage API, with that
  backend's own costs.
"""

import threading
from typing import BinaryIO

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.core.files.uploadedfile import UploadedFile

from operations.storage.base import FileStore
from operations.storage.errors import StorageUnavailable
from operations.storage.local import LocalDiskStore

__all__ = [
    "SMALL_BLOCK_BYTES",
    "FileStore",
    "StorageUnavailable",
    "backend",
    "delete",
    "exists",
    "listdir",
    "open_for_reading",
    "save",
    "store_upload",
    "upload_target",
]

# Small reads (a header, a rejected row's text) need not fetch a whole block.
SMALL_BLOCK_BYTES = 64 * 1024

_lock = threading.Lock()
_current: tuple[Storage, FileStore] | None = None


def backend() -> FileStore:
    """The file store on the default storage. Made once for each storage Django configures (a
    new one when a test changes STORAGES), so that an S3 store's client is shared by all
    threads."""
    global _current
    storage = storages["default"]
    current = _current
    if current is None or current[0] is not storage:
        with _lock:
            current = _current
            if current is None or current[0] is not storage:
                current = _current = (storage, _store_for(storage))
    return current[1]


def _store_for(storage: Storage) -> FileStore:
    if settings.STORAGES["default"]["BACKEND"].startswith("storages.backends.s3"):
        # Imported only then: boto3 is heavy for a process that never talks to S3.
        from storages.backends.s3 import S3Storage

        from operations.storage.s3 import S3Store

        if isinstance(storage, S3Storage):
            return S3Store(storage)
    if isinstance(storage, FileSystemStorage):
        return LocalDiskStore(storage)
    return FileStore(storage)


def open_for_reading(name: str, *, block_size: int | None = None, read_ahead: bool = False) -> BinaryIO:
    """A binary file, seekable, read `block_size` bytes at a time from the store (S3: one
    ranged GET a block; default `LONG_TASK_S3_READ_BYTES`). Reading starts where it is sought
    to: nothing before that offset is fetched. `read_ahead` (S3, for a reader that goes on
    to the end, if `LONG_TASK_S3_READ_AHEAD`): each block once read, the next is fetched in a
    thread while this one is used."""
    return backend().open_for_reading(name, block_size=block_size, read_ahead=read_ahead)


def save(name: str, content: bytes | BinaryIO) -> str:
    """Store `content` (bytes, or a binary stream read to its end) under `name`; return the
    name it was stored under. S3: a stream is a multipart upload, one part in memory."""
    return backend().save(name, content)


def delete(name: str) -> None:
    """Delete a stored file; one that is already gone is not an error."""
    backend().delete(name)


def listdir(directory: str) -> list[str]:
    """The names of the files in `directory` (relative to it); none if it does not exist."""
    return backend().listdir(directory)


def exists(name: str) -> bool:
    """Whether a file is stored under `name`."""
    return backend().exists(name)


def upload_target(
    name: str, *, file_name: str, content_type: str, charset: str | None, content_type_extra: dict | None
) -> UploadedFile:
    """Where the upload handler writes a request's file as it arrives. S3: a multipart upload
    into the object `name` itself, aborted or deleted if the upload is refused, cut off or never
    kept. Local disk (and any storage but S3): a temporary file next to the media root, which
    `store_upload` renames to the name it is given."""
    return backend().upload_target(
        name, file_name=file_name, content_type=content_type, charset=charset, content_type_extra=content_type_extra
    )


def store_upload(upload: UploadedFile, name: str) -> str:
    """Keep a received upload; return its stored name. Local disk: a rename to `name`. S3: the
    upload is already its object, under the name `upload_target` was given (S3 has no rename).
    A resumable upload (`keep_stored`) is already in the store: handed over as it is."""
    keep_stored = getattr(upload, "keep_stored", None)
    if keep_stored is not None:
        return keep_stored()
    return backend().store_upload(upload, name)
