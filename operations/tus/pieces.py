"""One piece of a resumable upload, received: read from the request in blocks (never whole),
checked as a one-request upload is (within the declared length, UTF-8 text without NUL bytes,
a UTF-8 sequence split between two pieces included) and against its checksum, and written to
the file store as it comes. A piece that fails a check leaves nothing behind."""

from collections.abc import Callable
from dataclasses import dataclass

from django.http import UnreadablePostError

from operations.csv_reader import TextCheck
from operations.errors import BadInput, TooLarge
from operations.storage import resumable
from operations.tus.protocol import ChecksumMismatch

# The body is read, checked and written this much at a time.
BLOCK_BYTES = 256 * 1024


@dataclass
class Received:
    """A piece stored: the new pieces (recorded by the caller, then `writer.settle()`), the
    pending UTF-8 bytes at its end, and whether its body was cut off before its end."""

    pieces: resumable.StoredPieces
    text_pending: bytes
    writer: resumable.PieceWriter
    cut: bool = False


def receive(
    *,
    body,
    pieces: resumable.StoredPieces,
    length: int,
    content_length: int | None,
    text_pending: bytes,
    checksum,
    keep_alive: Callable[[], None],
    running_hash=None,
) -> Received:
    """Append the piece read from `body` (a file-like object: `read(n)`) to `pieces`, a file
    of `length` bytes in the end. `checksum`: (a hash object, the digest expected) or None.
    `keep_alive()` is called as blocks arrive (the caller's hold on the upload); `running_hash`,
    if given, is fed every byte stored (see `running_hash`). A piece whose
    body is cut off is kept as far as it came, unless it has a checksum."""
    room = length - pieces.size
    if content_length is not None and content_length > room:
        raise TooLarge(f"The piece has {content_length} bytes, more than the {room} the upload still takes")
    text = TextCheck(pending=text_pending)
    writer = resumable.writer(pieces, length=length, piece_bytes=content_length)
    try:
        hashes = [h for h in (checksum[0] if checksum else None, running_hash) if h is not None]
        received, cut = _read_into(writer, body, room=room, text=text, hashes=hashes, keep_alive=keep_alive)
        if pieces.size + received == length:
            text.feed(b"", final=True)
        if text.problem:
            raise BadInput(text.problem)
        if checksum is not None and (cut or checksum[0].digest() != checksum[1]):
            raise ChecksumMismatch()
        stored = writer.commit()
    except BaseException:
        writer.rollback()
        raise
    return Received(pieces=stored, text_pending=text.pending, writer=writer, cut=cut)


def _read_into(writer, body, *, room: int, text: TextCheck, hashes: list, keep_alive) -> tuple[int, bool]:
    received = 0
    while True:
        try:
            data = body.read(BLOCK_BYTES)
        except (UnreadablePostError, OSError):
            return received, True
        if not data:
            return received, False
        received += len(data)
        if received > room:
            raise TooLarge(f"The piece goes past the upload's length ({room} bytes were left): nothing of it was kept")
        text.feed(data)
        if text.problem:
            raise BadInput(text.problem)
        for digest in hashes:
            digest.update(data)
        writer.write(data)
        keep_alive()
