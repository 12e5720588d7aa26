"""A file stored in pieces as they arrive (a resumable upload, `operations.tus`): each piece is
appended at the end of what is stored, and a piece that is refused on the way (a checksum that
does not match, bytes that are not text) leaves nothing behind. The stored state is a
`StoredPieces`, which the caller keeps in the database between pieces; the store holds the
bytes only.

- Local disk: one file, written in place; a piece refused is cut off again (`truncate`).
- S3 (`s3_pieces`): one multipart upload, parts of LONG_TASK_S3_PART_BYTES sent as they fill.
  What does not fill a part yet (S3 refuses parts under 5 MiB but for the last) is kept in a
  small object of its own, the tail, read back and sent first with the next piece: held in the
  store, not in a web process's memory or on its disk. A piece of a known size (Content-Length)
  of 5 MiB or more ends in a part of its own, and leaves no tail.

Finished (`finish`), the pieces are one file under `StoredPieces.name`, which an operation can
take over as it is (no copy).
"""

import contextlib
import os
from dataclasses import replace

from django.core.files.storage import FileSystemStorage

from operations import storage
from operations.errors import BadInput
from operations.storage.stored_pieces import PieceWriter, StoredPieces

__all__ = ["PieceWriter", "StoredBytesLost", "StoredPieces", "begin", "discard", "finish", "writer"]

NOT_SUPPORTED = "Resumable uploads need the local disk or S3 as the file store"


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


def writer(pieces: StoredPieces, *, length: int, piece_bytes: int | None = None) -> PieceWriter:
    """A writer that appends one piece (of `piece_bytes`, if known) to `pieces`, a file of
    `length` bytes in the end."""
    s3 = _s3()
    if s3 is not None:
        return s3.S3PieceWriter(pieces, length=length, piece_bytes=piece_bytes)
    return LocalPieceWriter(pieces)


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


class StoredBytesLost(Exception):
    """The file is shorter than the bytes recorded as stored: the machine stopped before they
    reached the disk."""


class LocalPieceWriter(PieceWriter):
    """Written in place after the stored bytes. Whatever lies beyond them (a piece refused by a
    process that died before it could cut it off) is cut off first. A piece is not fsync'ed (no
    more than a one-request upload's file is): a machine that stops may lose the last pieces,
    which the next one finds (`StoredBytesLost`) rather than filling the gap with zeros."""

    def __init__(self, pieces: StoredPieces):
        self.pieces = pieces
        self.written = 0
        self.file = open(storage.backend().storage.path(pieces.name), "r+b")  # noqa: SIM115
        if os.fstat(self.file.fileno()).st_size < pieces.size:
            self.file.close()
            raise StoredBytesLost(pieces.name)
        self.file.truncate(pieces.size)
        self.file.seek(pieces.size)

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.written += len(data)

    def commit(self) -> StoredPieces:
        self.file.close()
        return replace(self.pieces, size=self.pieces.size + self.written)

    def rollback(self) -> None:
        with contextlib.suppress(OSError):
            self.file.truncate(self.pieces.size)
        self.file.close()
