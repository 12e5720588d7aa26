"""The record pipeline's two ways through a file give the same import (SPEC §7, I1, I8).

`CsvRecords` takes plain records a block of lines at a time, everything else one record at a
time from `RecordReader.records`. Both ways are driven by the same tests: against records and
offsets computed independently (files written by `csv.writer`, record by record), and, for files
that take every way through the reader (bad quotes, limits...), against each other: whatever
the file, the block size and the chunk sizes, a job reading by blocks must give, chunk by chunk,
exactly what a job reading one record at a time gives: the same rows, the same rejected rows
(reason and raw text), the same checkpoints. The one-record-at-a-time reading of such files is
itself checked in tests/api/test_upload_type.py and tests/unit/test_csv_reader.py.
"""

import csv
import io
import itertools
from dataclasses import dataclass

import pytest
from django.test import override_settings
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from operations import csv_records
from operations.csv_reader import read_header
from operations.csv_records import BadRecord, CsvRecords, Records
from operations.models import Operation
from operations.operation_types.upload import UploadJob

HEADER = "a,b,c\n"
LINE_LIMIT = 48
FIELD_LIMIT = 30

# Lines and pieces of lines that take every way through the reader: plain rows, quoted
# separators and quotes, fields over several lines, rows of the wrong width, blank lines,
# quotes never closed, CRLF, non-ASCII text, lines over the line limit, fields over the field
# limit, a carriage return where the csv module refuses it.
PIECES = [
    "1,2,3\n",
    "x,y,z\n",
    '"a,b",c,d\n',
    '"say ""hi""",b,c\n',
    '"multi\nline",b,c\n',
    '"multi\r\nline",b,c\r\n',
    'a,b,"multi\nline"\n',
    'a,b,"never closed\n',
    "1,2\n",
    "1,2,3,4\n",
    "\n",
    "\r\n",
    "a,b,c\r\n",
    '"never closed,b,c\n',
    "é,😀,中文\n",
    "ü" * 30 + ",b,c\n",
    "x" * 60 + ",b,c\n",
    '"' + "f" * 40 + '",b,c\n',
    "a\rb,c,d\n",
    ",,\n",
    '"",,""\n',
]


@st.composite
def files(draw) -> bytes:
    header = draw(st.sampled_from(["a\n", "a,b\n", HEADER, "a,b,c,d\n"]))
    pieces = draw(st.lists(st.sampled_from(PIECES), max_size=40))
    text = "".join(pieces)
    if draw(st.booleans()):
        text = text.rstrip("\n")  # no final newline
    return (header + text).encode()


def new_job(data: bytes, checkpoint: dict, block_bytes: int) -> UploadJob:
    header = read_header(io.BytesIO(data))
    op = Operation(pk=1, columns=header.columns, options={}, **checkpoint)
    return UploadJob(op, open_input=lambda **_: io.BytesIO(data), row_tuples=True, block_bytes=block_bytes)


def import_by_chunks(data: bytes, *, block_bytes: int, chunk_sizes: list[int], resumed: bool = False) -> list:
    """What each chunk of a job over `data` holds: rows, rejected rows, checkpoint. `resumed`: a
    new job for each chunk, from the last checkpoint (a pause and a resume between chunks)."""
    checkpoint = {"position": read_header(io.BytesIO(data)).end_offset, "lines_finished": 0, "lines_failed": 0}
    job = new_job(data, checkpoint, block_bytes)
    chunks = []
    try:
        for size in chunk_sizes * 1000:
            if resumed:
                job.close()
                job = new_job(data, checkpoint, block_bytes)
            chunk = job.read_chunk(max_rows=size)
            chunk.prepare()  # read now (no chunk time: the same cut whatever the speed)
            rows = [row for batch in chunk.rows for row in batch]
            rejected = [(error.line_number, error.reason, error.raw) for error in chunk.rejected]
            chunks.append((rows, rejected, chunk.progress))
            checkpoint = {name: chunk.progress.checkpoint[name] for name in checkpoint}
            if chunk.progress.finished:
                return chunks
    finally:
        job.close()
    raise AssertionError("the import did not finish")


@pytest.fixture(autouse=True)
def small_limits():
    saved = csv.field_size_limit()
    with override_settings(LONG_TASK_CSV_LINE_LIMIT=LINE_LIMIT, LONG_TASK_CSV_FIELD_LIMIT=FIELD_LIMIT):
        yield
    csv.field_size_limit(saved)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    data=files(),
    block_bytes=st.integers(1, 200),
    chunk_sizes=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    resumed=st.booleans(),
)
@example(
    data=(HEADER + "1,2,3\n" * 5 + '"open,b,c\n' + "4,5,6\n" * 5).encode(),
    block_bytes=40,
    chunk_sizes=[3],
    resumed=False,
)
def test_reading_by_blocks_gives_what_reading_record_by_record_gives(data, block_bytes, chunk_sizes, resumed):
    one_by_one = import_by_chunks(data, block_bytes=0, chunk_sizes=chunk_sizes, resumed=resumed)
    assert import_by_chunks(data, block_bytes=block_bytes, chunk_sizes=chunk_sizes, resumed=resumed) == one_by_one


@pytest.mark.parametrize("limit", [{"LONG_TASK_CHUNK_SECONDS": 0}, {"LONG_TASK_CHUNK_BYTES": 0}])
@hypothesis_settings(max_examples=100, deadline=None)
@given(data=files(), block_bytes=st.integers(1, 200))
def test_chunks_whose_time_or_bytes_are_up_at_once_still_each_take_a_row_and_import_the_same(limit, data, block_bytes):
    """A chunk streamed into the database stops when its time is up (the worker on PostgreSQL),
    and any chunk once it has read LONG_TASK_CHUNK_BYTES: with no time or no bytes at all, each
    chunk still moves on, and the whole import is the same."""
    expected = import_by_chunks(data, block_bytes=0, chunk_sizes=[1000])
    checkpoint = {"position": read_header(io.BytesIO(data)).end_offset, "lines_finished": 0, "lines_failed": 0}
    job = new_job(data, checkpoint, block_bytes)
    rows, rejected = [], []
    with override_settings(**limit):
        for _ in range(len(data) + 2):
            chunk = job.read_chunk(max_rows=1000)
            rows += [row for batch in chunk.rows for row in batch]  # streamed: read with the time
            rejected += [(error.line_number, error.reason, error.raw) for error in chunk.rejected]
            progress = chunk.progress
            if progress.finished:
                break
            assert chunk.units > 0
        job.close()
    assert progress.finished
    assert (rows, rejected, progress.checkpoint) == (expected[0][0], expected[0][1], expected[0][2].checkpoint)


def test_a_chunk_reads_at_most_its_bytes_and_a_block_more():
    data = (HEADER + "".join(f"{n},b,c\n" for n in range(1, 101))).encode()  # 6 to 8 bytes a row
    checkpoint = {"position": read_header(io.BytesIO(data)).end_offset, "lines_finished": 0, "lines_failed": 0}
    job = new_job(data, checkpoint, block_bytes=40)
    sizes, finished = [], False
    with override_settings(LONG_TASK_CHUNK_BYTES=100):
        while not finished:
            chunk = job.read_chunk(max_rows=1000)
            chunk.prepare()
            sizes.append(chunk.units)
            finished = chunk.progress.finished
    job.close()
    assert sum(sizes) == 100
    assert max(sizes) <= (100 + 40) // 6 and len(sizes) >= 100 * 8 // (100 + 40)


def test_a_file_of_plain_rows_is_read_by_blocks(monkeypatch):
    """The tests here must compare two different readings: with blocks, the rows of a plain
    file are all parsed by the block way; without, none is."""
    data = (HEADER + "".join(f"{n},b,c\n" for n in range(1, 101))).encode()
    by_blocks = import_by_chunks(data, block_bytes=200, chunk_sizes=[1000])
    assert [line for _, line, _ in by_blocks[0][0]] == list(range(1, 101))
    plain_rows = CsvRecords._plain_rows
    parsed = []

    def counted(self, lines, line):
        rows = plain_rows(self, lines, line)
        parsed.append(len(rows))
        return rows

    monkeypatch.setattr(CsvRecords, "_plain_rows", counted)
    by_block_size = {}
    for block_bytes in (200, 0):  # blocks of 48 bytes at most here (LINE_LIMIT), 6 to 8 rows
        parsed.clear()
        import_by_chunks(data, block_bytes=block_bytes, chunk_sizes=[1000])
        by_block_size[block_bytes] = (sum(parsed), max(parsed, default=0))
    assert by_block_size == {200: (100, 8), 0: (0, 0)}


# --- the records against independently written files -----------------------------------------


@dataclass
class Written:
    """A file written record by record (no header): for each record, its fields ([] for a
    blank line) and the byte offsets where its line(s) begin and end."""

    data: bytes
    width: int
    records: list[list[str]]
    starts: list[int]
    ends: list[int]

    def expected(self) -> list:
        """(line, fields) of each row, (line, reason, raw) of each row error, in file order,
        and the end offset of each."""
        out, line = [], 0
        for fields, start, end in zip(self.records, self.starts, self.ends, strict=True):
            if not fields:
                continue
            line += 1
            if len(fields) == self.width:
                out.append(((line, fields), end))
            else:
                reason = f"expected {self.width} fields, found {len(fields)}"
                out.append(((line, reason, self.data[start:end].decode()), end))
        return out


# Fields on one line may hold the separator and quotes; a field over several lines holds no
# separator, so that no line inside it reads as a row of the table (that is taken for a quote
# never closed, which tests/api/test_upload_type.py covers).
ONE_LINE = st.text(st.sampled_from('ab,"é😀 '), max_size=6)
LINES = st.text(st.sampled_from('ab"é \n'), max_size=8)


@st.composite
def written(draw) -> Written:
    width = draw(st.integers(1, 4))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    field = st.one_of(ONE_LINE, LINES)
    record = st.one_of(
        st.just([]),
        st.lists(field, min_size=width, max_size=width),
        st.lists(field, min_size=width, max_size=width),
        st.lists(field, min_size=1, max_size=width + 2),
    )
    records = draw(st.lists(record, max_size=30))
    lines = []
    for fields in records:
        out = io.StringIO()
        if fields:
            csv.writer(out, lineterminator=terminator).writerow(fields)
        else:
            out.write(terminator)
        lines.append(out.getvalue().encode())
    if lines and records[-1] and draw(st.booleans()):
        lines[-1] = lines[-1][: -len(terminator)]  # no final line break
    ends = list(itertools.accumulate(map(len, lines)))
    return Written(b"".join(lines), width, records, [0, *ends][: len(ends)], ends)


def read_records(file: Written, *, block_bytes: int, chunk_sizes: list[int], strict: bool = False):
    """Each chunk of the reading as (items, state after it): a row is (line, fields)."""
    reader = CsvRecords(
        io.BytesIO(file.data),
        offset=0,
        line=0,
        width=file.width,
        to_row=lambda line, fields: (line, fields),
        raw_text=lambda start, end: file.data[start:end].decode(),
        strict=strict,
        block_bytes=block_bytes,
    )
    chunks = []
    for size in itertools.cycle(chunk_sizes):
        items = []
        for item in reader.read(max_rows=size):
            if isinstance(item, Records):
                assert [line for line, _ in item.rows] == list(range(item.first_line, item.first_line + len(item.rows)))
                items += item.rows
            else:
                assert isinstance(item, BadRecord)
                items.append((item.line, item.reason, item.raw))
        state = reader.state
        chunks.append((items, (state.offset, state.line, state.finished, state.error)))
        if state.finished or state.error:
            return chunks


def expected_chunks(file: Written, chunk_sizes: list[int]) -> list:
    """The chunks that `read_records` must give, without `strict`."""
    records = file.expected()
    chunks, taken = [], 0
    for size in itertools.cycle(chunk_sizes):
        items = records[taken : taken + size]
        taken += len(items)
        finished = len(items) < size  # the chunk looked past the last record
        offset = len(file.data) if finished else items[-1][1] if items else chunks[-1][1][0]
        chunks.append(([item for item, _ in items], (offset, taken, finished, "")))
        if finished:
            return chunks


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    file=written(),
    block_bytes=st.sampled_from([0, 1, 7, 30, 64, 200, 64 * 1024]),
    chunk_sizes=st.lists(st.integers(1, 12), min_size=1, max_size=4),
)
def test_both_ways_give_the_records_and_checkpoints_of_the_file_as_written(file, block_bytes, chunk_sizes):
    assert read_records(file, block_bytes=block_bytes, chunk_sizes=chunk_sizes) == expected_chunks(file, chunk_sizes)


@hypothesis_settings(max_examples=200, deadline=None)
@given(file=written(), block_bytes=st.sampled_from([0, 1, 30, 200, 64 * 1024]))
def test_strict_reading_stops_before_the_first_bad_record(file, block_bytes):
    """The checkpoint excludes the bad record (its blank lines before it are taken), and the
    reading says which line it was and why."""
    chunks = read_records(file, block_bytes=block_bytes, chunk_sizes=[1000], strict=True)
    records = file.expected()
    bad = next((n for n, (item, _) in enumerate(records) if len(item) == 3), None)
    if bad is None:
        assert chunks == expected_chunks(file, [1000])
        return
    line, reason, _ = records[bad][0]
    starts = [start for fields, start in zip(file.records, file.starts, strict=True) if fields]
    [(items, state)] = chunks
    assert items == [item for item, _ in records[:bad]]
    assert state == (starts[bad], bad, False, f"line {line}: {reason}")


def test_the_default_block_is_within_the_line_limit():
    reader = CsvRecords(io.BytesIO(b""), offset=0, line=0, width=1, to_row=list, raw_text=str, line_limit=1000)
    assert reader._pace.size == 1000 < csv_records.BLOCK_BYTES
