"""An Upload's dry run (`dry_run=true`, SPEC §10, §13): the file read and every row converted and
checked as the import would, with the same row errors, but no row stored (UploadedRow's or the
target's). Its totals: the rows accepted, and the rejected ones counted by the kind of their
reason, kept in `Operation.checkpoint` and saved with each chunk's checkpoint, so that a resume
counts on from the last commit.

Once it has completed, its stored file is handed to a new Upload that imports it for real
(`import_checked`): the file is not sent again, and belongs from then on to the import alone
(its terminate deletes it; the dry run keeps its verdicts and no file).
"""

import re
from collections.abc import Iterable

from operations import storage, targets
from operations.csv_reader import read_header
from operations.errors import Conflict
from operations.models import Operation, RowError
from operations.operation_types.base import Progress

FIRST_ERRORS = 5
# Kinds counted apart; the rest together, so that a file of ever new reasons stays small.
MOST_KINDS = 50
OTHER_KIND = "other reasons"
_VALUE = re.compile(r':\s*"(?:[^"\\]|\\.)*"\s*')
_EARLIER_LINE = re.compile(r"in line \d+ of this file")


def reason_kind(reason: str) -> str:
    """A row error's reason without its values: `score: "abc" is not an integer` is counted as
    `score is not an integer`; a row with several bad cells as its first."""
    without_values = _VALUE.sub(" ", reason)  # first: a value may hold "; " too
    return _EARLIER_LINE.sub("in this file", without_values.split("; ", 1)[0]).strip()


class Verdicts:
    """The dry run's totals of rejected rows by kind, carried from chunk to chunk."""

    def __init__(self, op: Operation):
        self.kept = dict(op.checkpoint or {})
        self.by_kind: dict[str, int] = dict(self.kept.get("rejected_by_reason", {}))
        self.first: list[dict] = list(self.kept.get("first_errors", []))

    def count(self, chunk, rejected: Iterable[RowError]) -> None:
        """Add the chunk's rejected rows to the totals saved with its checkpoint (unless the
        chunk is left out: `strict` failed it, and its checkpoint stays where it started)."""
        progress = chunk.progress
        if progress.checkpoint is chunk.start:
            return
        by_kind = dict(self.by_kind)
        for error in rejected:
            kind = reason_kind(error.reason)
            if kind not in by_kind and len(by_kind) >= MOST_KINDS:
                kind = OTHER_KIND
            by_kind[kind] = by_kind.get(kind, 0) + 1
        first = self.first
        if len(first) < FIRST_ERRORS:
            earliest = sorted(rejected, key=lambda error: error.line_number)[: FIRST_ERRORS - len(first)]
            first = first + [{"line_number": e.line_number, "reason": e.reason, "raw": e.raw} for e in earliest]
        self.by_kind, self.first = by_kind, first
        kept = {**self.kept, "rejected_by_reason": by_kind, "first_errors": first}
        checkpoint = {**progress.checkpoint, "checkpoint": kept}
        chunk.progress = Progress(checkpoint=checkpoint, finished=progress.finished, error=progress.error)


def summary(op: Operation) -> dict:
    """What a dry run found so far: rows accepted and rejected, rejected by kind, the first row
    errors, and the import that took its file, if one did. From the operation alone (no query:
    lists of statuses stay at a fixed number of queries)."""
    kept = op.checkpoint or {}
    return {
        "accepted": op.lines_finished - op.lines_failed,
        "rejected": op.lines_failed,
        "rejected_by_reason": kept.get("rejected_by_reason", {}),
        "first_errors": kept.get("first_errors", []),
        "import_operation": kept.get("import_operation"),
    }


def import_refusal(op: Operation) -> str | None:
    """None: `op` is no dry run; "": its file can be imported now; otherwise why not."""
    kept = op.checkpoint or {}
    if not op.options.get("dry_run"):
        return None
    if op.state != Operation.State.COMPLETED:
        return f"The dry run is {op.state}: import it once it has completed"
    if kept.get("import_operation"):
        return f"This dry run's file was imported already, by operation {kept['import_operation']}"
    if not op.file:
        return "The dry run's file is no longer stored (past its retention): upload the file again"
    return ""


def import_checked(op: Operation, *, header_limits: dict) -> tuple[dict, dict]:
    """The import of a completed dry run `op` (locked): its options and its input fields (the
    dry run's stored file, from the first data row). Conflict when there is nothing to import."""
    kept = op.checkpoint or {}
    refusal = import_refusal(op)
    if refusal is None:
        raise Conflict(f"Operation {op.pk} is not a dry run: only a dry run's file can be imported")
    if refusal:
        raise Conflict(refusal)
    # The resumable upload that brought the file is gone once the dry run started from it.
    options = {name: value for name, value in op.options.items() if name not in ("dry_run", "upload")}
    if options.get("target"):
        target = targets.get(options["target"])
        target.plan(op.columns, mapping=options.get("mapping"), strict=bool(options.get("strict")))
    fields = {
        "file": op.file.name,
        "file_name": op.file_name,
        "file_size": op.file_size,
        "file_sha256": op.file_sha256,
        "columns": op.columns,
        "position": kept.get("header_end") or _header_end(op.file.name, header_limits),
    }
    return {**options, "checked_by": op.pk}, fields


def hand_over(op: Operation, *, to: Operation) -> dict:
    """The dry run's fields once the import `to` has taken its file: no file of its own any more
    (the import's terminate deletes it), and which import took it."""
    return {"file": "", "checkpoint": {**(op.checkpoint or {}), "import_operation": to.pk}}


def _header_end(name: str, limits: dict) -> int:
    """The byte offset where the data rows of a stored file start."""
    with storage.open_for_reading(name, block_size=storage.SMALL_BLOCK_BYTES) as stored:
        return read_header(stored, **limits).end_offset
