"""The CSV reader (SPEC §7, I7, I8): exact byte offsets, resume from any record boundary, header
checks, and the upload's text check.

The expected records and offsets are computed independently: every line is written on its own
with `csv.writer`, so the byte offset after record k is the sum of the encoded lengths of the
lines before it.
"""

import csv
import io
import tempfile
import tracemalloc
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from operations.csv_reader import BOM, CsvProblem, Header, RecordReader, TextCheck, read_header

NOT_UTF8 = "The file is not UTF-8 text"
HAS_NUL = "The file is not text (it contains NUL bytes)"

# Pieces that are hard for a CSV reader: separators, quotes, line breaks of every kind (also the
# ones that str.splitlines() would split on but CSV must not), multi-byte and combined characters.
SPECIAL = [
    ",",
    '"',
    '""',
    ',"',
    "\n",
    "\r\n",
    "\r",
    "\n\n",
    "😀",
    "👩\u200d👩\u200d👧",
    "é",
    "中文",
    " ",
    "\t",
    "%s",
    "\\",
    "\u2028",
    "\x85",
    "\x0c",
    "\ufeff",
]
CHARACTERS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
FIELDS = st.lists(st.one_of(st.sampled_from(SPECIAL), st.text(CHARACTERS, max_size=6)), max_size=4).map("".join)


@dataclass
class Table:
    header: list[str]
    records: list[list[str]]  # [] is a blank line
    terminator: str
    quoting: int
    bom: bool
    final_newline: bool

    def line(self, fields: list[str]) -> str:
        if not fields:
            return self.terminator
        out = io.StringIO()
        csv.writer(out, lineterminator=self.terminator, quoting=self.quoting).writerow(fields)
        return out.getvalue()

    def lines(self) -> list[bytes]:
        """The header's line, then one per record, encoded."""
        lines = [self.line(self.header), *(self.line(record) for record in self.records)]
        if not self.final_newline and (len(lines) == 1 or self.records[-1]):
            lines[-1] = lines[-1][: -len(self.terminator)]
        encoded = [line.encode() for line in lines]
        if self.bom:
            encoded[0] = BOM + encoded[0]
        return encoded

    def data(self) -> bytes:
        return b"".join(self.lines())

    def ends(self) -> list[int]:
        """ends[0]: the header's end; ends[k]: the byte offset just past record k."""
        ends, total = [], 0
        for line in self.lines():
            total += len(line)
            ends.append(total)
        return ends


def _writable(field: str, terminator: str, quoting: int) -> str:
    # Python 3.11's csv.writer quotes a field only for the line terminator's characters, so a
    # lone "\r" would be written unquoted in a "\n" file (a writer limitation, not the reader's).
    if terminator == "\n" and quoting == csv.QUOTE_MINIMAL and "\r" in field and "\n" not in field:
        return field + "\n"
    return field


@st.composite
def tables(draw) -> Table:
    width = draw(st.integers(1, 5))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    field = FIELDS.map(lambda text: _writable(text, terminator, quoting))
    header = draw(
        # A header starting with U+FEFF is indistinguishable from a BOM: left out.
        st.lists(field, min_size=width, max_size=width, unique=True).filter(lambda h: not h[0].startswith("\ufeff"))
    )
    records = draw(
        st.lists(
            st.one_of(st.lists(field, min_size=width, max_size=width), st.just([])),
            max_size=10,
        )
    )
    return Table(
        header=header,
        records=records,
        terminator=terminator,
        quoting=quoting,
        bom=draw(st.booleans()),
        final_newline=draw(st.booleans()),
    )


def open_stream(data: bytes, kind: str):
    if kind == "bytes":
        return io.BytesIO(data)
    stream = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it; a real buffered file like the worker's
    stream.write(data)
    stream.flush()
    return stream


def read_all(reader: RecordReader) -> list[tuple[list[str], int]]:
    return [(record, reader.offset) for record in reader]


# --- reading and resuming ---------------------------------------------------------------------


@hypothesis_settings(max_examples=300, deadline=None)
@given(table=tables(), kind=st.sampled_from(["bytes", "file"]))
def test_reading_from_the_header_yields_exactly_the_records_with_exact_offsets(table, kind):
    data, ends = table.data(), table.ends()
    with open_stream(data, kind) as stream:
        assert read_header(stream) == Header(columns=table.header, end_offset=ends[0])
        reader = RecordReader(stream, offset=ends[0])
        assert read_all(reader) == list(zip(table.records, ends[1:], strict=True))
        assert reader.offset == len(data)


@hypothesis_settings(max_examples=200, deadline=None)
@given(table=tables(), kind=st.sampled_from(["bytes", "file"]))
def test_a_reader_started_at_any_record_boundary_yields_exactly_the_rest(table, kind):
    """I8: a resume seeks to the checkpoint's byte offset and reads nothing before it."""
    data, ends = table.data(), table.ends()
    # What the first reader records as it goes is what a checkpoint would store.
    with open_stream(data, kind) as stream:
        header = read_header(stream)
        reader = RecordReader(stream, offset=header.end_offset)
        checkpoints = [header.end_offset] + [offset for _, offset in read_all(reader)]
        assert checkpoints == ends
        for k, offset in enumerate(checkpoints):
            # Everything before the checkpoint is unreadable garbage for the resumed reader.
            garbage = b"\xff" * offset + data[offset:]
            with open_stream(garbage, kind) as resumed_stream:
                resumed = RecordReader(resumed_stream, offset=offset)
                assert read_all(resumed) == list(zip(table.records[k:], ends[k + 1 :], strict=True))


def test_crlf_inside_quotes_and_at_line_ends_is_kept_apart():
    header, first, second = b"a,b\r\n", b'"x\r\ny","1,2"\r\n', b'"",z\r\n'
    stream = io.BytesIO(header + first + second)
    assert read_header(stream) == Header(columns=["a", "b"], end_offset=len(header))
    reader = RecordReader(stream, offset=len(header))
    assert read_all(reader) == [
        (["x\r\ny", "1,2"], len(header + first)),
        (["", "z"], len(header + first + second)),
    ]


@pytest.fixture
def field_limit():
    previous = csv.field_size_limit()
    yield csv.field_size_limit
    csv.field_size_limit(previous)


def test_reading_goes_on_after_a_record_over_the_field_limit(field_limit):
    field_limit(10)
    data = b"a,b\n" + b"x" * 20 + b",y\n" + b"1,2\n"
    reader = RecordReader(io.BytesIO(data), offset=4)
    with pytest.raises(csv.Error):
        next(reader)
    assert reader.offset == 27
    assert read_all(reader) == [(["1", "2"], len(data))]


@pytest.mark.parametrize("where", ["header", "data row"])
def test_a_line_without_line_breaks_is_read_in_bounded_memory(field_limit, where):
    """I7: a file that is one huge physical line (no "\\n" at all, or "\\r"-only line ends) must
    not be read into memory at once: the field limit is hit long before, and memory stays
    O(field limit), not O(file)."""
    field_limit(64 * 1024)
    huge = b"x" * (16 * 1024**2)
    data = huge if where == "header" else b"a,b\n" + huge
    stream = io.BytesIO(data)
    tracemalloc.start()
    try:
        if where == "header":
            with pytest.raises(CsvProblem):
                read_header(stream)
        else:
            with pytest.raises(csv.Error):
                next(RecordReader(stream, offset=4))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024**2, f"peak {peak / 1024**2:.1f} MiB for a 16 MiB line"


# --- the header -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"\n", b"\n\r\n\n", BOM, BOM + b"\r\n\r\n"],
    ids=["empty", "one blank line", "blank lines", "BOM only", "BOM and blank lines"],
)
def test_a_file_without_a_header_row_is_refused(data):
    with pytest.raises(CsvProblem, match="no header row"):
        read_header(io.BytesIO(data))


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"a,b,a\n1,2,3\n", "a"),
        (b'"x,y",z,"x,y"\n', "x,y"),
        ("é,😀,😀\n".encode(), "😀"),
        (b",x,\n", ""),
    ],
)
def test_duplicate_column_names_are_refused(data, name):
    with pytest.raises(CsvProblem) as refused:
        read_header(io.BytesIO(data))
    assert str(refused.value) == f"The header names column '{name}' twice"


def test_column_names_that_differ_only_in_case_or_spaces_are_distinct():
    assert read_header(io.BytesIO(b"a,A, a\n")).columns == ["a", "A", " a"]


@pytest.mark.parametrize(
    ("head", "rest", "columns"),
    [
        (b"name,x\n", b"1,2\n", ["name", "x"]),
        (b"\n\r\n\nname,x\r\n", b"1,2\n", ["name", "x"]),
        (BOM + b"name,x\n", b"1,2\n", ["name", "x"]),
        (BOM + b"\r\n\nname,x\n", b"", ["name", "x"]),
        (BOM + b'"na\nme",x', b"", ["na\nme", "x"]),
        (BOM + BOM + b"name\n", b"\n1\n", ["\ufeffname"]),  # only the first BOM is a BOM
    ],
    ids=["plain", "blank lines before", "BOM", "BOM and blank lines", "BOM, no final newline", "two BOMs"],
)
def test_header_is_found_after_blank_lines_and_the_bom_is_stripped(head, rest, columns):
    stream = io.BytesIO(head + rest)
    assert read_header(stream) == Header(columns=columns, end_offset=len(head))


def test_a_header_that_is_not_utf8_is_refused():
    with pytest.raises(CsvProblem, match="not UTF-8"):
        read_header(io.BytesIO(b"na\xffme,x\n1,2\n"))


# --- the upload's text check ---------------------------------------------------------------------

TEXT = st.lists(st.one_of(st.sampled_from(SPECIAL), st.text(CHARACTERS, max_size=20)), max_size=12).map("".join)
INVALID_UTF8 = [
    b"\xff",
    b"\xfe",
    b"\x80",  # a lone continuation byte
    b"\xc0\xaf",  # overlong
    b"\xe0\x80\xaf",  # overlong
    b"\xed\xa0\x80",  # a surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xe2\x82",  # truncated, followed by more text
    b"\xc3",  # truncated
]


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    return [data[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]


def check(chunks: list[bytes], *, final_alone: bool) -> str:
    text_check = TextCheck()
    if final_alone:  # as the upload handler does: the chunks, then an empty final one
        for chunk in chunks:
            text_check.feed(chunk)
        text_check.feed(b"", final=True)
    else:
        for chunk in chunks[:-1]:
            text_check.feed(chunk)
        text_check.feed(chunks[-1], final=True)
    return text_check.problem


@hypothesis_settings(max_examples=300, deadline=None)
@given(text=TEXT, cuts=st.lists(st.integers(0, 10**6), max_size=10), final_alone=st.booleans())
def test_valid_utf8_split_anywhere_is_accepted(text, cuts, final_alone):
    assert check(chunked(text.encode(), cuts), final_alone=final_alone) == ""


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    before=TEXT,
    bad=st.sampled_from(INVALID_UTF8),
    after=TEXT,
    cuts=st.lists(st.integers(0, 10**6), max_size=10),
    final_alone=st.booleans(),
)
def test_invalid_utf8_is_refused_wherever_the_chunks_split(before, bad, after, cuts, final_alone):
    data = before.encode() + bad + after.encode()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # the example really is invalid
    assert check(chunked(data, cuts), final_alone=final_alone) == NOT_UTF8


@hypothesis_settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=64), cuts=st.lists(st.integers(0, 10**6), max_size=6))
def test_arbitrary_bytes_are_accepted_exactly_when_they_are_utf8_without_nul(data, cuts):
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    problem = check(chunked(data, cuts), final_alone=True)
    if valid and b"\x00" not in data:
        assert problem == ""
    elif valid:
        assert problem == HAS_NUL
    else:
        assert problem in (NOT_UTF8, HAS_NUL)  # whichever the chunks show first


@hypothesis_settings(max_examples=200, deadline=None)
@given(text=TEXT, at=st.integers(0, 10**6), cuts=st.lists(st.integers(0, 10**6), max_size=10))
def test_nul_bytes_are_refused(text, at, cuts):
    encoded = text.encode()
    at %= len(encoded) + 1
    data = encoded[:at] + b"\x00" + encoded[at:]
    assert check(chunked(data, cuts), final_alone=True) == HAS_NUL


def test_a_truncated_character_at_the_end_is_only_refused_when_final():
    text_check = TextCheck()
    text_check.feed("abc€".encode()[:-1])
    assert text_check.problem == ""
    text_check.feed(b"", final=True)
    assert text_check.problem == NOT_UTF8


def test_a_problem_sticks():
    text_check = TextCheck()
    text_check.feed(b"a\xffb")
    assert text_check.problem == NOT_UTF8
    text_check.feed(b"valid text", final=True)
    assert text_check.problem == NOT_UTF8
