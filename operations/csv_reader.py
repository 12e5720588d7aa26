"""Streaming CSV reading with exact byte offsets (SPEC §7, I7, I8).

The file is read as bytes, one physical line at a time, and handed to `csv.reader`, which pulls
lines only as it needs them. So after each record, `RecordReader.offset` is the byte position
just past that record's last line: a checkpoint that a later run can `seek` to without reading
anything before it, and memory never holds more than one record.
"""

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

BOM = codecs.BOM_UTF8


# A quoted field that swallows this many lines that each are a row of the table is taken for an
# unclosed quote (see RecordReader.unclosed_quote).
RUNAWAY_LINES = 3


def _width(line: str) -> int:
    """The number of fields of one physical line read on its own."""
    try:
        return len(next(csv.reader([line]), []))
    except csv.Error:
        return -1


class CsvProblem(ValueError):
    """The file as a whole cannot be imported (bad header, not text...)."""


@dataclass(frozen=True)
class Header:
    columns: list[str]
    end_offset: int  # byte offset of the first data row


@dataclass(frozen=True)
class Resync:
    """Where reading goes on after a quote that was never closed (see RecordReader.unclosed_quote)."""

    reason: str
    offset: int  # just past the first line of the bad record


@dataclass(frozen=True)
class _Block:
    """What `read_lines` returned last, for `take`."""

    lines: list[str]
    count: int  # how many lines it returned (the caller may cut or extend the list)
    size: int  # their bytes, each with its "\n"
    ascii_only: bool


class RecordReader:
    """Records of a CSV file from byte `offset` on. `offset` follows the last record returned.

    Iterating yields lists of fields (an empty list for a blank line) and raises `csv.Error`
    for a record it cannot read (a field over the size limit, a line over `line_limit`), after
    which reading can go on. Memory holds at most one line of `line_limit` bytes, whatever the
    file (I7). Hot loops iterate `records`, the C `csv.reader` itself, and must then check
    `overlong` after each record (see `problem`).
    """

    def __init__(
        self, stream: BinaryIO, *, offset: int = 0, line_limit: int | None = None, field_limit: int | None = None
    ):
        if field_limit is not None:
            csv.field_size_limit(field_limit)  # the csv module's limit is per process
        self.line_limit = line_limit or 4 * csv.field_size_limit() + 4
        self._stream = stream
        self.restart(offset)

    def restart(self, offset: int) -> None:
        """Read on from byte `offset` (a line boundary) with a fresh csv reader."""
        self._stream.seek(offset)
        self.offset = offset
        self.overlong = False  # the record just read had a line over line_limit
        # Bytes already read from the stream, from `offset` on, not yet handed to a csv reader
        # (what `read_lines` read and `take` left): `_pending[_at:]`. Read before the stream.
        self._pending, self._at = b"", 0
        self._block = _Block(lines=[], count=0, size=0, ascii_only=True)
        self.records = csv.reader(self._lines())

    def _readline(self, limit: int) -> bytes:
        """The next physical line, at most `limit` bytes of it: from `_pending`, then the stream."""
        if not self._pending:
            return self._stream.readline(limit)
        pending, at = self._pending, self._at
        end = pending.find(b"\n", at, at + limit) + 1  # past the line's "\n"
        if not end:  # no "\n" within the limit: as far as the limit, or all that is pending
            end = min(len(pending), at + limit)
        raw = pending[at:end]
        if end < len(pending):
            self._at = end
            return raw
        self._pending, self._at = b"", 0
        if raw[-1:] == b"\n" or len(raw) == limit:
            return raw
        return raw + self._stream.readline(limit - len(raw))

    def _lines(self) -> Iterator[str]:
        limit, readline = self.line_limit, self._stream.readline
        while raw := self._readline(limit) if self._pending else readline(limit):
            self.offset += len(raw)
            if len(raw) == limit and raw[-1:] != b"\n":
                # Too long to be a row: skip to the end of the line; the record is refused.
                while (rest := self._readline(limit)) and rest[-1:] != b"\n":
                    self.offset += len(rest)
                self.offset += len(rest)
                self.overlong = True
                yield "\n"
                continue
            yield raw.decode("utf-8")

    def read_lines(self, max_bytes: int) -> list[str] | None:
        """The whole lines that follow `offset` within the next `max_bytes` bytes, decoded,
        without their "\n"; None if there is no whole line there (a longer line, the last
        line without "\n", the end of the file). `offset` does not move: `take` says how
        many of them were used, and the rest is read again.

        A line without its "\n" gives a csv reader the same record as with it, when the line
        is a record of its own; a record over several lines must be read with `records`. No
        line here is over `line_limit` as long as `max_bytes` is not. This is the fast way
        through a file: one read, one decode and one split for many lines, where `records`
        costs a Python step a line.
        """
        have = len(self._pending) - self._at
        if have < max_bytes:
            self._pending = self._pending[self._at :] + self._stream.read(max_bytes - have)
            self._at = 0
        at = self._at
        cut = self._pending.rfind(b"\n", at, at + max_bytes) + 1
        if not cut:
            return None
        data = self._pending[at:cut]
        try:
            lines = data.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            return None  # `records` will tell which line
        lines.pop()  # the empty piece after the last "\n"
        self._block = _Block(lines=lines, count=len(lines), size=len(data), ascii_only=data.isascii())
        return lines

    def take(self, count: int) -> None:
        """The first `count` lines that `read_lines` returned were used: move `offset` past them.
        (The caller may have cut the list or added to it after them.)"""
        block = self._block
        if count == block.count:
            used = block.size
        elif not count:
            return
        elif block.ascii_only:
            used = sum(map(len, block.lines[:count])) + count
        else:
            used = len("\n".join(block.lines[:count]).encode()) + 1
        self.offset += used
        self._at += used

    def __iter__(self) -> "RecordReader":
        return self

    def __next__(self) -> list[str]:
        try:
            fields = next(self.records)
        except csv.Error as exc:
            raise csv.Error(self.problem(exc)) from None
        if self.overlong:
            raise csv.Error(self.problem())
        return fields

    def unclosed_quote(self, start: int, *, width: int, unreadable: str = "") -> Resync | None:
        """Whether the record just read, which began at byte `start` and spans several physical
        lines (a quoted field with line breaks), is rather a quote that was never closed and
        swallowed the lines after it. If so: the reason, and the offset just past the record's
        first line, where reading should go on (`restart`) so that the bad quote costs one row.

        Such a record is one that (1) could not be read (`unreadable` says why: a field over the
        field limit, a line over the line limit), or (2) still has its quote open at the end of the file, or (3)
        whose quoted field swallows at least RUNAWAY_LINES whole lines (neither its first nor its
        last) that are each a row of `width` fields, `width` being 2 or more. A legitimate field
        with line breaks passes: its inner lines are text, not rows of the table.
        """
        lines = list(self._physical_lines(start, self.offset))
        first_end = lines[0][0] if lines else self.offset
        if unreadable:
            return Resync(
                f"unclosed quote? the quoted field that opens on this line spans lines: {unreadable}", first_end
            )
        try:
            for _ in csv.reader((text for _, text in lines), strict=True):
                pass
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                return Resync(
                    "unclosed quote: the quoted field that opens on this line runs to the end of the file", first_end
                )
        inner = [text for _, text in lines[1:-1]]
        if width >= 2 and len(inner) >= RUNAWAY_LINES and all(_width(text) == width for text in inner):
            return Resync(
                f"unclosed quote: the quoted field that opens on this line swallows {len(inner)} rows", first_end
            )
        return None

    def _physical_lines(self, start: int, end: int) -> Iterator[tuple[int, str]]:
        """(end offset, text) of each line between byte offsets `start` and `end`, read apart
        from the csv reader's position, which is left where it was."""
        stream, limit = self._stream, self.line_limit
        saved = stream.tell()
        stream.seek(start)
        try:
            position = start
            while position < end and (raw := stream.readline(limit)):
                position += len(raw)
                if len(raw) == limit and raw[-1:] != b"\n":
                    while (rest := stream.readline(limit)) and rest[-1:] != b"\n":
                        position += len(rest)
                    position += len(rest)
                    raw = b"\n"
                yield position, raw.decode("utf-8", errors="replace")
        finally:
            stream.seek(saved)

    def problem(self, exc: csv.Error | None = None) -> str:
        """What was wrong with the record just read (`exc`: what csv raised for it, if anything)."""
        if self.overlong:
            self.overlong = False
            return f"a line is longer than {self.line_limit} bytes"
        return str(exc)


def read_header(
    stream: BinaryIO,
    *,
    line_limit: int | None = None,
    field_limit: int | None = None,
    max_columns: int | None = None,
    max_bytes: int | None = None,
) -> Header:
    """Read and check the header row: present, not blank, no duplicate column names, at most
    `max_columns` names in at most `max_bytes` bytes (whatever the file, reading it costs at
    most `max_bytes` of memory: a wide header costs every row, every import and every page)."""
    stream.seek(0)
    start = len(BOM) if stream.read(len(BOM)) == BOM else 0
    if max_bytes:
        line_limit = min(line_limit or max_bytes + 1, max_bytes + 1)
    reader = RecordReader(stream, offset=start, line_limit=line_limit, field_limit=field_limit)
    columns: list[str] = []
    try:
        while not columns:  # blank lines before the header are tolerated
            begins = reader.offset
            columns = next(reader)
    except StopIteration:
        raise CsvProblem("The file has no header row") from None
    except csv.Error as exc:
        if max_bytes and reader.offset - begins > max_bytes:
            raise CsvProblem(f"The header row is longer than {max_bytes} bytes") from None
        raise CsvProblem(f"The header row cannot be read: {exc}") from None
    except UnicodeDecodeError:
        raise CsvProblem("The file is not UTF-8 text") from None
    if max_bytes and reader.offset - begins > max_bytes:
        raise CsvProblem(f"The header row is longer than {max_bytes} bytes")
    if max_columns and len(columns) > max_columns:
        raise CsvProblem(f"The header has {len(columns)} columns; at most {max_columns} are allowed")
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise CsvProblem(f"The header names column '{name}' twice")
        seen.add(name)
    return Header(columns=columns, end_offset=reader.offset)


class TextCheck:
    """Feed the bytes of an upload chunk by chunk; `problem` says why it is not UTF-8 text."""

    def __init__(self, *, pending: bytes = b"") -> None:
        """`pending`: the start of a UTF-8 sequence that an earlier part of the file ended with
        (`pending` of the check that read it), for a file checked in pieces."""
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        if pending:
            self._decoder.setstate((pending, 0))
        self.problem = ""

    @property
    def pending(self) -> bytes:
        """The bytes of a UTF-8 sequence begun but not ended by what was fed so far."""
        return self._decoder.getstate()[0]

    def feed(self, chunk: bytes, *, final: bool = False) -> None:
        if self.problem:
            return
        if b"\x00" in chunk:
            self.problem = "The file is not text (it contains NUL bytes)"
            return
        try:
            self._decoder.decode(chunk, final)
        except UnicodeDecodeError:
            self.problem = "The file is not UTF-8 text"
