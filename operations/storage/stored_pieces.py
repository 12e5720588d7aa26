"""What a file stored in pieces is (`StoredPieces`) and how one piece is appended
(`PieceWriter`): shared by the backends of `resumable`."""

from dataclasses import dataclass, field


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
