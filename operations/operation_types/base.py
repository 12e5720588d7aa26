"""The interface of an operation type (SPEC §9).

A type declares its options, says how to take its input, how to cut the work into chunks and
do one chunk, what its checkpoint and progress are, and how to roll back. The services, the
worker loop and the state machine only talk to this interface and save what it returns as
opaque Operation fields, so a new type touches none of them.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from operations.errors import Conflict
from operations.models import Operation


@dataclass(frozen=True)
class Progress:
    """Where a job stands after a chunk."""

    # The Operation fields to save with the chunk, in its transaction: the type's cursor
    # (`position`, `checkpoint`) and counters (`lines_finished`, `lines_failed`, `total_lines`).
    checkpoint: dict = field(default_factory=dict)
    # The work is done: the operation completes with this chunk.
    finished: bool = False
    # Set when the operation must fail right after this chunk (e.g. a bad row in strict mode).
    error: str = ""


@dataclass
class Chunk:
    """Up to `max_rows` units of work. A chunk may be read lazily, while `Job.write_chunk`
    writes it (streaming into the database), or all at once by `prepare()`. `progress` and
    `units` are known once it has been written."""

    progress: Progress | None = None
    units: int = 0  # units (rows) of work it held, for sizing the next chunk and the rate

    def prepare(self) -> None:
        """Read the whole chunk now. The worker calls this before the transaction where the
        database has a single writer (SQLite), so that the write lock is held for the writes
        only; elsewhere reading may stream into the writes."""


class Job(ABC):
    """One worker's run of one operation, from its checkpoint on."""

    # Its chunks give up within milliseconds of a cancel (their Python loops ask
    # `stop_requests.check_chunk()`): where a worker hears stop requests, a pause does not wait
    # for such a chunk, which may then be longer (`stop_requests.chunk_seconds`).
    stops_mid_chunk: bool = False

    @abstractmethod
    def read_chunk(self, *, max_rows: int) -> Chunk:
        """The next chunk of up to `max_rows` units. It may defer the reading (see Chunk)."""

    @abstractmethod
    def write_chunk(self, chunk: Chunk) -> None:
        """Do the chunk's work on Django's default connection. The worker calls this inside the
        chunk's transaction and commits it together with `chunk.progress`, or rolls both back.
        When it returns, `chunk.progress` is set."""

    def close(self) -> None:
        """Free what the job holds (files, buffers)."""


class OperationType(ABC):
    name: str
    # The parameters `parse_options` reads: a registration naming any other is refused, so
    # that nothing a client sends is silently ignored (SPEC §6).
    option_names: frozenset[str] = frozenset()

    # --- options, at registration ---
    def parse_options(self, data: Mapping, *, actor) -> dict:
        """The type's options from a registration's parameters; BadInput for a bad one.
        `actor` is who registers (a type may check what that user may see)."""
        return {}

    # --- the web side: input ---
    @abstractmethod
    def prepare_input(self, op: Operation, *, data: Mapping, files: Mapping) -> dict:
        """Check and store the input of a start; return the Operation fields to save, which
        include the initial checkpoint. Runs outside any lock."""

    def check_resume(self, op: Operation, *, data: Mapping, files: Mapping) -> dict:
        """Refuse a resume whose request disagrees with the stored input or checkpoint; return
        the Operation fields the resume changes (e.g. options), if any."""
        return {}

    def preview(self, data: bytes, *, complete: bool, max_rows: int, options: Mapping | None = None) -> dict | None:
        """A dry run over the first bytes of an input (`complete`: all of it), with the
        registration's `options`, to show before a start what the work would make of it.
        Writes nothing. None: the type has no preview."""
        return None

    def import_refusal(self, op: Operation) -> str | None:
        """None: `op` is no dry run; "": its input can be imported now (import_checked);
        otherwise why not."""
        return None

    def import_checked(self, op: Operation) -> tuple[dict, dict]:
        """For an operation that imports what `op` (a completed dry run, locked) checked: its
        options and its input fields (those `prepare_input` returns), taken from `op` rather
        than sent again. Conflict if `op` has nothing to import."""
        raise Conflict(f"{self.name} operations have no dry run to import from")

    def hand_over_input(self, op: Operation, *, to: Operation) -> dict:
        """The fields of `op` that change once `to` has taken its input (see import_checked)."""
        return {}

    def status_fields(self, op: Operation) -> dict:
        """Fields the type adds to the status object (e.g. a dry run's totals)."""
        return {}

    def discard_input(self, fields: Mapping) -> None:
        """Undo `prepare_input` when the start lost a race."""

    def percent_done(self, op: Operation) -> float | None:
        """How far the work is, 0-100, from the checkpoint alone (None: unknown)."""
        return None

    def download_refusal(self, op: Operation) -> str:
        """Why `op.file` cannot be downloaded now ("": it can)."""
        return "" if op.file else "This operation has no file to download"

    def describe_checkpoint(self, op: Operation) -> str:
        """Where the operation stands, for the events (e.g. "line 7,500")."""
        return "checkpoint"

    # --- the worker side: work ---
    @abstractmethod
    def open(self, op: Operation) -> Job:
        """A job that continues `op` from its checkpoint, without redoing finished work."""

    @abstractmethod
    def rollback_done(self, op: Operation) -> bool:
        """Nothing is left for `rollback_chunk` to delete."""

    @abstractmethod
    def rollback_chunk(self, op: Operation, *, max_rows: int) -> int:
        """Delete up to `max_rows` of what `op` wrote, after `op.rollback_position`; return the
        new rollback position. Runs inside a transaction with the rollback checkpoint."""

    @abstractmethod
    def rollback_rest(self, op: Operation) -> dict:
        """Delete whatever is left (in the final transaction of a terminate); return the
        Operation fields that a terminated operation keeps (e.g. counters back to zero)."""

    def delete_input(self, op: Operation) -> None:
        """Delete the stored input and output files (before the terminate is acknowledged)."""
