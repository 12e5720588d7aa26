"""The Upload job's two ways through a file give the same import (SPEC §7, I1, I8).

Plain records are taken a block of lines at a time (`UploadJob._plain_rows`), everything else
one record at a time from `RecordReader.records`. Whatever the file, the block size and the
chunk sizes, a job reading by blocks must give, chunk by chunk, exactly what a job reading one
record at a time gives: the same rows, the same rejected rows (reason and raw text), the same
checkpoints. The one-record-at-a-time reading is itself checked against independently written
files in tests/api/test_upload_type.py and tests/unit/test_csv_reader.py.
"""

import csv
import io

import pytest
from django.test import override_settings
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from operations.csv_reader import read_header
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


@hypothesis_settings(max_examples=100, deadline=None)
@given(data=files(), block_bytes=st.integers(1, 200))
def test_chunks_whose_time_is_up_at_once_still_each_take_a_row_and_import_the_same(data, block_bytes):
    """A chunk streamed into the database stops when its time is up (the worker on PostgreSQL):
    with no time at all, each chunk still moves on, and the whole import is the same."""
    expected = import_by_chunks(data, block_bytes=0, chunk_sizes=[1000])
    checkpoint = {"position": read_header(io.BytesIO(data)).end_offset, "lines_finished": 0, "lines_failed": 0}
    job = new_job(data, checkpoint, block_bytes)
    rows, rejected = [], []
    with override_settings(LONG_TASK_CHUNK_SECONDS=0):
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


def test_a_file_of_plain_rows_is_read_by_blocks():
    """The test above must compare two different readings: here the rows of a plain file come in
    batches of many rows, one per block, and one at a time without blocks."""
    data = (HEADER + "".join(f"{n},b,c\n" for n in range(1, 101))).encode()
    by_blocks = import_by_chunks(data, block_bytes=200, chunk_sizes=[1000])
    checkpoint = {"position": read_header(io.BytesIO(data)).end_offset, "lines_finished": 0, "lines_failed": 0}
    batch_sizes = {}
    for block_bytes in (200, 0):  # blocks of 48 bytes at most here (LINE_LIMIT), 6 to 8 rows
        job = new_job(data, checkpoint, block_bytes)
        chunk = job.read_chunk(max_rows=1000)
        chunk.prepare()
        batch_sizes[block_bytes] = max(map(len, chunk.rows))
        job.close()
    assert batch_sizes == {200: 8, 0: 1}
    assert [line for _, line, _ in by_blocks[0][0]] == list(range(1, 101))
