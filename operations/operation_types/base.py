"""The interface of an operation type (SPEC §9).

A type says how to take its input, how to cut the work into chunks and do one chunk, what its
checkpoint is, and how to roll back. The state machine, the worker loop and the API only talk
to this interface, so a new type touches none of them.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

from operations.models import Operation


@dataclass(frozen=True)
class Progress:
    """Where a job stands after a chunk; saved as the operation's checkpoint."""

    position: int
    lines_finished: int
    lines_failed: int
    finished: bool = False
    # Set when the operation must fail right after this chunk (e.g. a bad row in strict mode).
    error: str = ""


@dataclass
class Chunk:
    """Up to `max_rows` units of work. A chunk may be read lazily, while `Job.write_chunk`
    writes it (streaming into the database), or all at once by `prepare()`. `progress` and
    `units` are known once it has been read."""

    progress: Progress | None = None
    units: int = 0  # units (rows) of work it held, for sizing the next chunk

    def prepare(self) -> None:
        """Read the whole chunk now. The worker calls this outside the transaction where the
        database has a single writer (SQLite), so that the write lock is held for the writes
        only; elsewhere reading streams into the writes."""


class Job(ABC):
    """One worker's run of one operation, from its checkpoint on."""

    @abstractmethod
    def read_chunk(self, *, max_rows: int) -> Chunk:
        """The next chunk of up to `max_rows` units. It may defer the reading (see Chunk)."""

    @abstractmethod
    def write_chunk(self, chunk: Chunk) -> None:
        """Write the chunk on Django's default connection. The worker calls this inside the
        chunk's transaction and commits it together with `chunk.progress`, or rolls both back.
        When it returns, `chunk.progress` is set."""

    def close(self) -> None:
        """Free what the job holds (files, buffers)."""


class OperationType(ABC):
    name: str

    # --- the web side: input ---
    @abstractmethod
    def prepare_input(self, op: Operation, *, data: Mapping, files: Mapping) -> dict:
        """Check and store the input of a start; return the Operation fields to save."""

    def check_resume(self, op: Operation, *, data: Mapping, files: Mapping) -> dict:
        """Refuse a resume whose request disagrees with the stored input or checkpoint; return
        the Operation fields the resume changes (e.g. options), if any."""
        return {}

    def discard_input(self, fields: Mapping) -> None:
        """Undo `prepare_input` when the start lost a race."""

    def percent_done(self, op: Operation) -> float | None:
        """How far the work is, 0-100, from the checkpoint alone (None: unknown)."""
        return None

    # --- the worker side: work ---
    @abstractmethod
    def open(self, op: Operation) -> Job:
        """A job that continues `op` from its checkpoint, without redoing finished work."""

    @abstractmethod
    def rollback_chunk(self, op: Operation, *, max_rows: int) -> int:
        """Delete up to `max_rows` of what `op` wrote, after `op.rollback_position`; return the
        new rollback position. Runs inside a transaction with the rollback checkpoint."""

    def rollback_done(self, op: Operation) -> bool:
        return op.rollback_position >= op.lines_finished

    @abstractmethod
    def rollback_rest(self, op: Operation) -> None:
        """Delete whatever is left (in the final transaction of a terminate)."""

    def delete_input(self, op: Operation) -> None:
        """Delete the stored input (before the terminate is acknowledged)."""
