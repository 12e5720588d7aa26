"""The local disk (Django's FileSystemStorage under MEDIA_ROOT): the default file store."""

from typing import BinaryIO

from operations.storage.base import FileStore


class LocalDiskStore(FileStore):
    """Files under the media root. Reading opens the file itself, buffered by `block_size`;
    uploads are spooled next to the media root and renamed into place (see `FileStore`)."""

    def open_for_reading(self, name: str, *, block_size: int | None = None, read_ahead: bool = False) -> BinaryIO:
        return open(self.storage.path(name), "rb", buffering=block_size or -1)  # noqa: SIM115
