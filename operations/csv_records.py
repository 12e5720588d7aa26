"""The data records of a CSV import, from a checkpoint on: one pipeline, two ways to read (SPEC §7).

`CsvRecords.read` yields what the next data records are: `Records`, runs of consecutive records
that each are a row of the table, as `to_row(line number, fields)` makes them (the stage where a
record becomes what is stored), and `BadRecord`s, the row errors (a line number, the reason, the
raw text). `CsvRecords.state` is where reading stands,
which is the import's checkpoint: the byte offset after the last record taken, the number of
data records taken (rows and row errors; blank lines are no records), the end of the file.

The reading goes two ways, which give the same records, the same errors and the same state
whatever the block sizes and the chunks (tests/unit/test_upload_reading.py):

- one record at a time from `RecordReader.records` (the csv module over physical lines), which
  takes everything: quoted fields over several lines, quotes never closed, blank lines, rows of
  the wrong width, lines and fields over the limits;
- by blocks, the fast way for the common case: many whole lines read, decoded and split at once
  (`RecordReader.read_lines`) and parsed by one csv.reader, as long as each line is a plain
  record (a line of its own with the table's number of fields). The first line that is anything
  else ends the block; its record is then read the first way.
"""

import csv
import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from operations.csv_reader import RecordReader

# Blocks are at most this many bytes (and never more than the reader's line limit)...
BLOCK_BYTES = 64 * 1024
# ...and after a record that is not plain, the next rows are read one by one
# (ROWS_AFTER_IRREGULAR of them, twice as many each time a block took fewer, up to
# MOST_ROWS_AFTER_IRREGULAR), then a block of about twice what the last one used (at least
# SMALL_BLOCK_BYTES), which doubles while blocks are all plain: a file with an irregular record
# every few rows reads few bytes in vain.
ROWS_AFTER_IRREGULAR = 16
MOST_ROWS_AFTER_IRREGULAR = 1024
SMALL_BLOCK_BYTES = 1024
# Read one by one, rows are handed on in runs of at most this many (the chunk's time is looked
# at after each run).
ROWS_A_RUN = 256


@dataclass
class Records:
    """Consecutive data records that are each a row of the table, as `to_row` made them:
    `rows[i]` is line `first_line + i`."""

    first_line: int
    rows: list


@dataclass
class BadRecord:
    """A data record that is not a row of the table: a row error."""

    line: int
    reason: str
    raw: str  # its text, as `raw_text` gives it


@dataclass
class ReadState:
    """Where reading stands: the import's checkpoint."""

    offset: int  # the byte offset just past the last record taken, where the next one starts
    line: int  # data records taken so far, rows and row errors
    finished: bool = False  # the end of the file was reached
    error: str = ""  # `strict`: the first bad record, which stopped the reading (not taken)


@dataclass
class _Pace:
    """When the block way is tried, and how many bytes it reads (see BLOCK_BYTES)."""

    most_bytes: int
    size: int  # the next block's
    from_line: float  # the block way is tried from this line on
    rows_between: int = ROWS_AFTER_IRREGULAR

    def no_block(self, line: int) -> None:
        """No whole line in the block (a longer line, or the end): records for a while."""
        self.from_line = line + self.rows_between
        self.size = self.most_bytes

    def all_plain(self) -> None:
        self.size = min(self.most_bytes, 2 * self.size)
        self.rows_between = ROWS_AFTER_IRREGULAR

    def irregular(self, line: int, rows: int, used_bytes: int) -> None:
        """The block stopped at a record that is not plain, after `rows` rows of `used_bytes`."""
        if rows < self.rows_between:
            self.rows_between = min(MOST_ROWS_AFTER_IRREGULAR, 2 * self.rows_between)
        self.from_line = line + self.rows_between
        self.size = min(self.most_bytes, max(SMALL_BLOCK_BYTES, 2 * used_bytes))


@dataclass
class _Irregular:
    """A record read one at a time that is not plain, read but not yet taken."""

    fields: list[str] | None  # None: the csv module could not read it
    spans_lines: bool  # more than one physical line: a quoted field with line breaks, or a bad quote
    error: csv.Error | None = None  # what the csv module raised for it
    resume_at: int | None = None  # a quote never closed: reading goes on from this offset


class CsvRecords:
    """The data records of a CSV file of `width` columns from byte `offset` on, where `line`
    data records have been taken before. `to_row(line, fields)` makes a record that is a row of
    the table into what is stored; it is called as each record is parsed, so that the fields,
    many small objects, are freed at once rather than held for a block (which would cost the
    garbage collector more than the parsing). `raw_text(start, end)` reads the text of a bad record
    between two byte offsets (apart from `stream`, which reading moves on). `strict`: the first
    bad record stops the reading. `block_bytes`: the most a block reads (0: one record at a time
    throughout); `rows_a_block`: the most rows a block yields."""

    def __init__(
        self,
        stream: BinaryIO,
        *,
        offset: int,
        line: int,
        width: int,
        to_row: Callable[[int, list[str]], object],
        raw_text: Callable[[int, int], str],
        strict: bool = False,
        block_bytes: int = BLOCK_BYTES,
        rows_a_block: int = 10_000,
        line_limit: int | None = None,
        field_limit: int | None = None,
    ):
        self.reader = RecordReader(stream, offset=offset, line_limit=line_limit, field_limit=field_limit)
        self.state = ReadState(offset=offset, line=line)
        self.width = width
        self.to_row = to_row
        self.strict = strict
        self._raw_text = raw_text
        self._rows_a_block = rows_a_block
        # No line of a block may be over the line limit, which only `reader.records` enforces.
        most_bytes = min(block_bytes, self.reader.line_limit)
        self._pace = _Pace(most_bytes=most_bytes, size=most_bytes, from_line=0 if block_bytes else math.inf)

    def read(
        self, *, max_rows: int, deadline: float = math.inf, max_bytes: float = math.inf
    ) -> Iterator[Records | BadRecord]:
        """The next `max_rows` data records (fewer at the end of the file, or at the first bad
        one under `strict`), taken as they are yielded. Past the `time.monotonic()` `deadline`,
        or `max_bytes` bytes of the file on, reading stops soon after, but only once it has
        taken a record."""
        state = self.state
        first, last = state.line, state.line + max_rows
        end = state.offset + max_bytes
        while state.line < last and not (state.finished or state.error):
            if state.line > first and state.offset >= end:
                return
            if state.line >= self._pace.from_line:
                all_plain = yield from self._block(last)
                if all_plain is not None and (
                    state.line >= last or (state.line > first and time.monotonic() > deadline)
                ):
                    return
                if all_plain:
                    continue
            if not (yield from self._one_at_a_time(last, deadline)):
                return

    # --- by blocks ---

    def _block(self, last: int) -> Generator[Records, None, bool | None]:
        """The plain records of a block of lines, up to line `last`. Returns True if they all
        were, False if one that is not ended the block, None if there was no whole line to read."""
        reader, state, pace = self.reader, self.state, self._pace
        lines = reader.read_lines(pace.size)
        if lines is None:
            pace.no_block(state.line)
            return None
        whole = min(len(lines), last - state.line, self._rows_a_block)
        del lines[whole:]
        started_at = reader.offset
        rows = self._plain_rows(lines, state.line)
        reader.take(len(rows))
        first = state.line + 1
        state.line += len(rows)
        state.offset = reader.offset
        if rows:
            yield Records(first, rows)
        if len(rows) == whole:
            pace.all_plain()
            return True
        pace.irregular(state.line, len(rows), state.offset - started_at)
        return False

    def _plain_rows(self, lines: list[str], line: int) -> list:
        """The rows of the first lines of `lines` (whole lines without their "\\n", after line
        number `line`) that each are a plain record.

        The common case at the fewest steps a row: the csv module iterates the list in C, and a
        row costs its parsing, `to_row` and two comparisons here.
        """
        width, to_row = self.width, self.to_row
        # A record of width + 1 fields after the last line: it ends the loop below, and a record
        # that the block cuts in two (a quote still open) swallows it and ends there.
        lines.append("," * width)
        records = csv.reader(lines)
        base = line
        rows: list = []
        add = rows.append
        try:
            for fields in records:
                line += 1
                if len(fields) != width or records.line_num + base != line:
                    break
                add(to_row(line, fields))
        except csv.Error:  # e.g. a field over the limit: the record is read again one at a time
            pass
        return rows

    # --- one record at a time ---

    def _one_at_a_time(self, last: int, deadline: float) -> Generator[Records | BadRecord, None, bool]:
        """Plain records up to where blocks are tried again, then the first record that is not
        plain, if any. Returns False when the chunk's time is up."""
        record = yield from self._plain_records(min(last, self._pace.from_line), deadline)
        if record is None:
            return time.monotonic() <= deadline
        state, reader = self.state, self.reader
        reason = self._problem(record)
        if not reason:  # a blank line, or a record over several lines that may be a row
            fields = record.fields
            if not fields:
                state.offset = reader.offset
                return True
            if len(fields) == self.width:
                state.line += 1
                state.offset = reader.offset
                yield Records(state.line, [self.to_row(state.line, fields)])
                return bool(state.line % ROWS_A_RUN) or time.monotonic() <= deadline
            reason = f"expected {self.width} fields, found {len(fields)}"
        yield from self._reject(record, reason)
        return True

    def _plain_records(self, stop: int, deadline: float) -> Generator[Records, None, _Irregular | None]:
        """Records that are each one line of `width` fields, in a tight loop up to line `stop`
        (or until the time is up, or the end of the file). Returns the record after them if it
        is not plain (read, not taken), else None."""
        reader, state, width, to_row = self.reader, self.state, self.width, self.to_row
        records = reader.records
        lines_read = records.line_num
        line, offset = state.line, state.offset
        run: list = []
        add = run.append
        irregular = None
        try:
            for fields in records:
                if len(fields) != width or records.line_num != lines_read + 1 or reader.overlong:
                    irregular = _Irregular(fields, spans_lines=records.line_num != lines_read + 1)
                    break
                lines_read += 1
                line += 1
                offset = reader.offset
                add(to_row(line, fields))
                if line >= stop or not (line % ROWS_A_RUN or time.monotonic() <= deadline):
                    break
            else:
                state.finished = True
        except csv.Error as exc:
            irregular = _Irregular(None, spans_lines=records.line_num > lines_read + 1, error=exc)
        if run:
            first = state.line + 1
            state.line, state.offset = line, offset
            yield Records(first, run)
        return irregular

    def _problem(self, record: _Irregular) -> str:
        """Why `record` cannot be a row ("": it may be, or be a blank line). A record over
        several lines that is a quote never closed gets its `resume_at`."""
        reader = self.reader
        unreadable = ""
        if record.error is not None or reader.overlong:
            unreadable = f"unreadable row: {reader.problem(record.error)}"
        if record.spans_lines:
            resync = reader.unclosed_quote(self.state.offset, width=self.width, unreadable=unreadable)
            if resync is not None:
                record.resume_at = resync.offset
                return resync.reason
        return unreadable

    def _reject(self, record: _Irregular, reason: str) -> Iterator[BadRecord]:
        state, reader = self.state, self.reader
        if record.resume_at is not None:
            # One row is bad, not the lines its quote swallowed: they are read again.
            reader.restart(record.resume_at)
        if self.strict:
            state.error = f"line {state.line + 1}: {reason}"
            return
        state.line += 1
        bad = BadRecord(line=state.line, reason=reason, raw=self._raw_text(state.offset, reader.offset))
        state.offset = reader.offset
        yield bad
