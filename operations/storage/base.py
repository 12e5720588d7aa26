"""What a file store does for the rest of the code (`FileStore`), done through Django's storage
API, so that any Django storage backend works, with that backend's own costs. The backends of
`local` and `s3` subclass it and do better where it matters: I7 (memory does not grow with the
file) and I8 (a resume reads from the checkpoint's byte offset, nothing before it)."""

from typing import BinaryIO

from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage
from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile


class FileStore:
    """The file store on the Django storage `storage`. Names are chosen by the callers, the
    extension included; `save` and `store_upload` return the name a file was stored under."""

    def __init__(self, storage: Storage):
        self.storage = storage

    def open_for_reading(self, name: str, *, block_size: int | None = None, read_ahead: bool = False) -> BinaryIO:
        """A binary file, seekable, read `block_size` bytes at a time from the store; reading
        starts where it is sought to. `read_ahead`: the caller reads on to the end, so the
        next block may be fetched while this one is used. Here: the storage's own file."""
        return self.storage.open(name, "rb")

    def save(self, name: str, content: bytes | BinaryIO) -> str:
        """Store `content` (bytes, or a binary stream read to its end) under `name`; return the
        name it was stored under."""
        content = ContentFile(content) if isinstance(content, bytes) else File(content)
        return self.storage.save(name, content)

    def delete(self, name: str) -> None:
        """Delete a stored file; one that is already gone is not an error."""
        self.storage.delete(name)

    def listdir(self, directory: str) -> list[str]:
        """The names of the files in `directory` (relative to it); none if it does not exist."""
        try:
            _, names = self.storage.listdir(directory)
        except FileNotFoundError:
            return []
        return names

    def exists(self, name: str) -> bool:
        return self.storage.exists(name)

    def upload_target(
        self, name: str, *, file_name: str, content_type: str, charset: str | None, content_type_extra: dict | None
    ) -> UploadedFile:
        """Where the upload handler writes a request's file as it arrives (`write`, then
        `finish(size)`, or `discard()` if it is refused on the way). `name`: where a store that
        writes the upload in place keeps it; here the upload is spooled to a temporary file,
        which `store_upload` stores under the name it is given."""
        return SpooledUpload(file_name, content_type, 0, charset, content_type_extra)

    def store_upload(self, upload: UploadedFile, name: str) -> str:
        """Keep a received upload under `name` (if the store can still choose); return its
        stored name. On local disk, with FILE_UPLOAD_TEMP_DIR next to the media root: a rename."""
        return self.storage.save(name, upload)


class SpooledUpload(TemporaryUploadedFile):
    """A request's file in a temporary file (FILE_UPLOAD_TEMP_DIR; next to the media root, so
    that storing it on local disk is a rename, not a second copy). Closing it deletes what was
    not stored."""

    finished = False
    _discarded = False

    def write(self, data: bytes) -> None:
        if not self._discarded:
            self.file.write(data)

    def finish(self, size: int) -> None:
        self.file.flush()
        self.file.seek(0)
        self.size = size
        self.finished = True

    def discard(self) -> None:
        """Refused while it arrives: keep nothing of it."""
        self._discarded = True
        self.file.truncate(0)
