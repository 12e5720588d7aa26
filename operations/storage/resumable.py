"""A file stored in pieces as they arrive (a resumable upload, `operations.tus`): each piece is
appended at the end of what is stored, and a piece that is refused on the way (a checksum that
does not match, bytes that are not text) leaves nothing behind. The stored state is a
`StoredPieces`, which the caller keeps in the database between pieces; the store holds the
bytes only.

- Local disk: one file, written in place; a piece refused is cut off again (`truncate`).
- S3 (`s3_pieces`): one multipart upload, parts of LONG_TASK_S3_PART_BYTES sent as they fill.
  What does not fill a part yet (S3 refuses parts under 5 MiB but for the last) is kept in a
  small object of its own, the tail, read back and sent first with the next piece: held in the
  store, not in a web process's memory or on its disk.

Finished (`finish`), the pieces are one file under `StoredPieces.name`, which an operation can
take over as it is (no copy).
"""

import contextlib
import os
from dataclasses import dataclass, field, replace

from django.core.files.storage import FileSystemStorage

from operations import storage
from operations.errors import BadInput

NOT_SUPPORTED = "Resumable uploads need the local disk or S3 as the file store"


@dataclass(frozen=True)
class StoredPieces:
    """Where the pieces of one file are: `size` bytes under `name` (S3: in the parts of the
    multipart upload `multipart_id`, and the tail object `tail_name`)."""

    name: str
    size: int = 0
    multipart_id: str = ""
    parts: list[dict] = field(default_factory=list)
    tail_name: str = ""


class PieceWriter:
    """Appends one piece: `write` its bytes, then `commit()` (the new StoredPieces; the old
    ones are still valid until `settle` is called once the new ones are recorded) or
    `rollback()` (nothing of the piece stays)."""

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def commit(self) -> StoredPieces:
        raise NotImplementedError

    def rollback(self) -> None:
        raise NotImplementedError

    def settle(self) -> None:
        """The committed pieces are recorded: drop what only the old ones needed."""


def _s3():
    """The S3 side, when the store is S3; None on local disk. Imported only then (boto3)."""
    backend = storage.backend()
    if isinstance(backend.storage, FileSystemStorage):
        return None
    from operations.storage import s3_pieces

    if not s3_pieces.supports(backend):
        raise BadInput(NOT_SUPPORTED)
    return s3_pieces


def begin(name: str) -> StoredPieces:
    """A new, empty file stored in pieces under `name`."""
    s3 = _s3()
    if s3 is not None:
        return s3.begin(name)
    path = storage.backend().storage.path(name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb"):
        pass
    return StoredPieces(name=name)


def writer(pieces: StoredPieces) -> PieceWriter:
    """A writer that appends one piece to `pieces`."""
    s3 = _s3()
    return s3.S3PieceWriter(pieces) if s3 is not None else LocalPieceWriter(pieces)


def finish(pieces: StoredPieces) -> None:
    """Make the pieces one file under `pieces.name` (S3: complete the multipart upload)."""
    s3 = _s3()
    if s3 is not None:
        s3.finish(pieces)


def discard(pieces: StoredPieces) -> None:
    """Delete everything stored of `pieces` (S3: abort the multipart upload, delete the tail)."""
    s3 = _s3()
    if s3 is not None:
        s3.discard(pieces)
    else:
        storage.delete(pieces.name)


class LocalPieceWriter(PieceWriter):
    """Written in place after the stored bytes. Whatever lies beyond them (a piece refused by a
    process that died before it could cut it off) is cut off first."""

    def __init__(self, pieces: StoredPieces):
        self.pieces = pieces
        self.written = 0
        self.file = open(storage.backend().storage.path(pieces.name), "r+b")  # noqa: SIM115
        self.file.truncate(pieces.size)
        self.file.seek(pieces.size)

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.written += len(data)

    def commit(self) -> StoredPieces:
        # On disk before the offset that says so is recorded (a 204 is a promise).
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return replace(self.pieces, size=self.pieces.size + self.written)

    def rollback(self) -> None:
        with contextlib.suppress(OSError):
            self.file.truncate(self.pieces.size)
        self.file.close()
