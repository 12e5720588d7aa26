"""operations/storage/ against a real S3 API (the suite's moto server) and the local disk: the
ranged reader reads like a file and fetches nothing before where it was sought to (I8), big
files go up in parts of bounded size (I7), connections cut mid-read are retried, a store that
stays away is an error that says so."""

import io
import random
import threading

import pytest

from operations import storage
from operations.storage.local import LocalDiskStore
from operations.storage.ranged_reader import FIRST_READ_BYTES
from operations.storage.s3 import S3Store
from testbed.machine import wait_for

pytestmark = pytest.mark.s3
MiB = 1024 * 1024
UNAVAILABLE = "The file store is not answering; try again"


def lines_of(size: int, seed: int = 7) -> bytes:
    """About `size` bytes of lines of varied lengths."""
    rng = random.Random(seed)
    out, total = [], 0
    while total < size:
        line = f"{total},{'x' * rng.randrange(0, 300)}\n".encode()
        out.append(line)
        total += len(line)
    return b"".join(out)


class GetLog:
    """The Range of every GetObject this process sends to S3 through the default storage."""

    def __init__(self):
        self.ranges: list[tuple[int, int]] = []
        client = storage.backend().objects.client
        client.meta.events.register("before-call.s3.GetObject", self._record)
        self._client = client

    def _record(self, params, **_):
        first, last = params["headers"]["Range"].removeprefix("bytes=").split("-")
        self.ranges.append((int(first), int(last)))

    def close(self):
        self._client.meta.events.unregister("before-call.s3.GetObject", self._record)


@pytest.fixture
def gets(s3):
    log = GetLog()
    yield log
    log.close()


@pytest.mark.parametrize("read_ahead", [False, True], ids=["one-get-at-a-time", "read-ahead"])
@pytest.mark.parametrize("block", [1000, 4096, 64 * 1024])
def test_the_ranged_reader_reads_as_a_local_file_does(s3, block, read_ahead):
    data = lines_of(50_000)
    storage.save("a.csv", data)
    reference = io.BytesIO(data)
    rng = random.Random(block)
    with storage.open_for_reading("a.csv", block_size=block, read_ahead=read_ahead) as stored:
        assert stored.seekable() and stored.readable()
        for _ in range(300):
            step = rng.choice(["seek", "read", "readline", "readinto", "tell"])
            if step == "seek":
                offset = rng.randrange(0, len(data) + 10)
                assert stored.seek(offset) == reference.seek(offset)
            elif step == "read":
                n = rng.choice([0, 1, 7, 999, 5000, 70_000])
                assert stored.read(n) == reference.read(n)
            elif step == "readline":
                assert stored.readline() == reference.readline()
            elif step == "readinto":
                mine, theirs = bytearray(rng.randrange(1, 9000)), bytearray(9000)
                n = stored.readinto(mine)
                assert mine[:n] == theirs[: reference.readinto(memoryview(theirs)[: len(mine)])]
            assert stored.tell() == reference.tell()
        assert stored.seek(0, io.SEEK_END) == len(data)
        stored.seek(len(data) - 10)
        assert stored.read() == data[-10:]
        stored.seek(0)
        assert stored.read() == data


def test_reading_from_an_offset_fetches_nothing_before_it(s3, gets):
    """I8 on S3: a reader sought to the checkpoint fetches from there on, one block at a time,
    whatever the offset: the same requests and bytes at 10% as at 85%."""
    data = lines_of(3 * MiB)
    storage.save("big.csv", data)
    block = MiB
    fetched = {}
    for share in (0.10, 0.85):
        offset = int(len(data) * share)
        gets.ranges.clear()
        with storage.open_for_reading("big.csv", block_size=block) as stored:
            stored.seek(offset)
            lines = [stored.readline() for _ in range(100)]
            assert b"".join(lines) == data[offset : offset + len(b"".join(lines))]
            assert gets.ranges == [(offset, offset + FIRST_READ_BYTES - 1)]  # a small first GET
            stored.read(400_000)
        # ... then each GET twice the last, up to the block, from where the last one ended.
        sizes = [last - first + 1 for first, last in gets.ranges]
        assert sizes == [256 * 1024, 512 * 1024]
        assert all(b[0] == a[1] + 1 for a, b in zip(gets.ranges, gets.ranges[1:], strict=False))
        fetched[share] = sizes
    assert fetched[0.10] == fetched[0.85]


def read_ahead_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("read-ahead")]


def test_reading_ahead_fetches_the_next_block_from_the_offset_on(s3, gets):
    """The worker's reader fetches the next block while it parses this one: still nothing
    before the offset (the first GET is from there, each next one from where the last ended),
    at most one block ahead of what was read, and the same requests at 10% as at 85%."""
    data = lines_of(6 * MiB)
    storage.save("big.csv", data)
    fetched = {}
    for share in (0.10, 0.85):
        offset = int(len(data) * share)
        gets.ranges.clear()
        with storage.open_for_reading("big.csv", block_size=MiB, read_ahead=True) as stored:
            stored.seek(offset)
            assert stored.readline() == data[offset : data.index(b"\n", offset) + 1]
            assert gets.ranges[0] == (offset, offset + FIRST_READ_BYTES - 1)
            rest = stored.read(400_000)
            assert rest == data[stored.tell() - len(rest) : stored.tell()]
            wait_for(lambda: not read_ahead_threads(), timeout=10, what="the GET ahead")
            # Two blocks read (256 KiB, then 512 KiB), the third one fetched ahead: no more.
            sizes = [last - first + 1 for first, last in gets.ranges]
            assert sizes == [256 * 1024, 512 * 1024, MiB]
        assert all(b[0] == a[1] + 1 for a, b in zip(gets.ranges, gets.ranges[1:], strict=False))
        fetched[share] = sizes
    assert fetched[0.10] == fetched[0.85]


def test_a_seek_drops_the_block_read_ahead(s3, gets):
    data = lines_of(2 * MiB)
    storage.save("seek.csv", data)
    with storage.open_for_reading("seek.csv", block_size=256 * 1024, read_ahead=True) as stored:
        stored.read(1000)
        stored.seek(1_500_000)  # past the buffer and the block ahead
        assert stored.read(5000) == data[1_500_000:1_505_000]
        stored.seek(10)
        assert stored.read() == data[10:]
    assert (1_500_000, 1_500_000 + FIRST_READ_BYTES - 1) in gets.ranges


def refuse_the_next_get_ahead(stored, s3_proxy) -> None:
    """Read a block, so that the next is fetched ahead; once that one is in, make the store go
    away and read it, so that the GET ahead of it is refused (and retried)."""
    stored.read(1000)
    wait_for(lambda: not read_ahead_threads(), timeout=10, what="the GET ahead")
    s3_proxy.refuse = True
    s3_proxy.cut_all()
    stored.read(FIRST_READ_BYTES)


def test_closing_a_reader_ends_its_read_ahead(s3, s3_proxy, settings, caplog):
    """A worker closing its job (a pause, a stop) leaves no thread behind, even one that was
    retrying a store gone away: it makes no attempt after the close."""
    settings.LONG_TASK_STORAGE_RETRIES = 5
    storage.save("close.csv", lines_of(4 * MiB))
    stored = storage.open_for_reading("close.csv", block_size=MiB, read_ahead=True)
    refuse_the_next_get_ahead(stored, s3_proxy)
    ahead = f"reading close.csv at byte {3 * FIRST_READ_BYTES} failed"  # 256 KiB read, then 512 KiB
    wait_for(lambda: ahead in caplog.text, timeout=10, what="the GET ahead to be refused")
    stored.close()
    wait_for(lambda: not read_ahead_threads(), timeout=30, what="the read-ahead thread to end")
    # Left to itself it would have tried (and logged) once for each retry.
    assert caplog.text.count(ahead) < settings.LONG_TASK_STORAGE_RETRIES


def test_a_read_ahead_that_cannot_start_loses_no_byte(s3, monkeypatch):
    """Review finding: the position moved past a block before the thread ahead started, so a
    failure to start it (no thread, no memory) skipped the block just received."""
    data = lines_of(2 * MiB)
    storage.save("no-thread.csv", data)
    start = threading.Thread.start
    failures = iter([RuntimeError("can't start new thread")])

    def start_once_failing(thread):
        if thread.name.startswith("read-ahead") and (failure := next(failures, None)):
            raise failure
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_once_failing)
    with storage.open_for_reading("no-thread.csv", block_size=256 * 1024, read_ahead=True) as stored:
        assert stored.read(10) + stored.read() == data


def test_a_seek_does_not_wait_for_the_retries_of_the_get_ahead(s3, s3_proxy, settings, caplog):
    """Review finding: dropping the block ahead waited for all its retries before the read
    after a seek began its own, so a store gone away failed that read twice as late. The GET
    ahead is stopped instead: no attempt after the seek."""
    settings.LONG_TASK_STORAGE_RETRIES = 4
    storage.save("seek-away.csv", lines_of(4 * MiB))
    ahead = f"reading seek-away.csv at byte {3 * FIRST_READ_BYTES} failed"  # 256 KiB read, then 512 KiB
    with storage.open_for_reading("seek-away.csv", block_size=MiB, read_ahead=True) as stored:
        refuse_the_next_get_ahead(stored, s3_proxy)  # the GET ahead is refused, and retries
        wait_for(lambda: ahead in caplog.text, timeout=10, what="the GET ahead to be refused")
        stored.seek(10)
        with pytest.raises(storage.StorageUnavailable) as raised:
            stored.read(1000)
    assert raised.value.message == UNAVAILABLE
    assert "reading seek-away.csv at byte 10 failed 5 times" in caplog.text
    # Left to itself it would have tried (and logged) once for each retry.
    assert caplog.text.count(ahead) < settings.LONG_TASK_STORAGE_RETRIES


def test_a_connection_cut_during_a_read_ahead_is_retried(s3, s3_proxy, caplog):
    data = lines_of(3 * MiB)
    storage.save("cut-ahead.csv", data)
    with storage.open_for_reading("cut-ahead.csv", block_size=MiB, read_ahead=True) as stored:
        first = stored.read(1000)  # the next block is fetched ahead...
        wait_for(lambda: not read_ahead_threads(), timeout=10, what="the GET ahead")
        s3_proxy.cut_after = 100_000  # ... and the one after it is cut after 100 kB
        s3_proxy.cut_all()
        assert first + stored.read() == data
    assert s3_proxy.cuts == 1
    assert "retrying" in caplog.text


def test_a_store_gone_during_a_read_ahead_fails_the_read_that_needs_it(s3, s3_proxy, settings, caplog):
    data = lines_of(2 * MiB)
    storage.save("away-ahead.csv", data)
    settings.LONG_TASK_STORAGE_RETRIES = 1
    with storage.open_for_reading("away-ahead.csv", block_size=MiB, read_ahead=True) as stored:
        with pytest.raises(storage.StorageUnavailable) as raised:
            refuse_the_next_get_ahead(stored, s3_proxy)
            stored.read()
        ahead = FIRST_READ_BYTES * 3  # 256 KiB read, then 512 KiB
        assert raised.value.message == UNAVAILABLE
        assert f"reading away-ahead.csv at byte {ahead} failed 2 times" in caplog.text
        s3_proxy.refuse = False  # the store is back: the same reader goes on
        stored.seek(0)
        assert stored.read() == data


def test_a_read_past_the_end_and_an_empty_object(s3):
    storage.save("empty.csv", b"")
    with storage.open_for_reading("empty.csv") as stored:
        assert stored.read() == b""
        assert stored.readline() == b""
    storage.save("small.csv", b"a,b\n")
    with storage.open_for_reading("small.csv") as stored:
        stored.seek(100)
        assert stored.read(10) == b""


def test_a_missing_object_is_file_not_found(s3):
    with pytest.raises(FileNotFoundError), storage.open_for_reading("gone.csv") as stored:
        stored.read(1)


def test_a_connection_cut_mid_read_is_retried_from_where_it_stopped(s3, s3_proxy, gets, caplog):
    data = lines_of(2 * MiB)
    storage.save("cut.csv", data)
    with storage.open_for_reading("cut.csv", block_size=2 * MiB) as stored:
        s3_proxy.cut_after = 100_000  # the next connection's answer stops after 100 kB
        s3_proxy.cut_all()  # ... and any pooled one is gone, so the GET opens that one
        assert stored.read() == data
    assert s3_proxy.cuts == 1
    assert "retrying" in caplog.text
    # The second GET asks for the rest of the block only: what arrived before the cut is kept.
    (first, last), (again, last_again) = gets.ranges[:2]
    assert (first, last, last_again) == (0, FIRST_READ_BYTES - 1, FIRST_READ_BYTES - 1)
    assert 0 < again < 100_000


def test_a_store_that_stays_away_fails_with_a_message_after_the_retries(s3, s3_proxy, settings, caplog):
    storage.save("away.csv", b"a,b\n1,2\n")
    settings.LONG_TASK_STORAGE_RETRIES = 1
    s3_proxy.refuse = True
    s3_proxy.cut_all()
    with storage.open_for_reading("away.csv") as stored, pytest.raises(storage.StorageUnavailable) as raised:
        stored.read()
    # What failed, and where, is in the log; the message names no endpoint, bucket or key.
    assert (raised.value.message, raised.value.status_code) == (UNAVAILABLE, 503)
    assert "reading away.csv at byte 0 failed 2 times" in caplog.text
    assert s3_proxy.endpoint in caplog.text


def body_size(body) -> int:
    """The length of a request body (a file), leaving it where it was."""
    position = body.tell()
    size = body.seek(0, io.SEEK_END)
    body.seek(position)
    return size


class Stream(io.RawIOBase):
    """`size` bytes handed out `step` at a time; raises after `fail_after` bytes if given."""

    def __init__(self, data: bytes, *, step: int = 256 * 1024, fail_after: int | None = None):
        self.data, self.step, self.fail_after, self.position = data, step, fail_after, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.fail_after is not None and self.position >= self.fail_after:
            raise OSError("the source went away")
        piece = self.data[self.position : self.position + min(len(buffer), self.step)]
        buffer[: len(piece)] = piece
        self.position += len(piece)
        return len(piece)


def test_a_stream_is_stored_in_parts_one_at_a_time(s3, settings):
    """I7 on S3: a stream (an export's parts joined) goes up as a multipart upload of parts of
    LONG_TASK_S3_PART_BYTES, so memory holds one part whatever the size of the file."""
    settings.LONG_TASK_S3_PART_BYTES = 5 * MiB
    data = lines_of(12 * MiB)
    sizes = []
    client = storage.backend().objects.client

    def record(params, **_):
        sizes.append(body_size(params["Body"]))

    client.meta.events.register("before-parameter-build.s3.UploadPart", record)
    try:
        name = storage.save("joined.csv", Stream(data))
    finally:
        client.meta.events.unregister("before-parameter-build.s3.UploadPart", record)
    assert name == "joined.csv"
    assert s3.read("joined.csv") == data
    assert sizes[:2] == [5 * MiB, 5 * MiB] and len(sizes) == 3 and sum(sizes) == len(data)
    assert s3.multipart_uploads() == []


def test_a_stream_that_fails_half_way_leaves_nothing(s3, settings):
    settings.LONG_TASK_S3_PART_BYTES = 5 * MiB
    with pytest.raises(OSError, match="went away"):
        storage.save("broken.csv", Stream(lines_of(8 * MiB), fail_after=6 * MiB))
    assert s3.all_keys() == []
    assert s3.multipart_uploads() == []


def test_delete_and_listdir(s3):
    for name in ("exports/7/1.part", "exports/7/2.part", "exports/8/1.part"):
        storage.save(name, b"x")
    assert sorted(storage.listdir("exports/7/")) == ["1.part", "2.part"]
    storage.delete("exports/7/1.part")
    storage.delete("exports/7/1.part")  # already gone: not an error
    assert storage.listdir("exports/7/") == ["2.part"]
    assert storage.listdir("exports/9/") == []
    assert s3.all_keys() == ["files/exports/7/2.part", "files/exports/8/1.part"]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_the_same_calls_on_local_disk_and_s3(request, backend):
    """The operation types call the same functions whatever the store."""
    if backend == "s3":
        request.getfixturevalue("s3")
    name = storage.save("exports/1/a.part", b"h\n1\n2\n")
    assert name == "exports/1/a.part"
    assert storage.save("exports/1/b.part", Stream(b"3\n")) == "exports/1/b.part"
    with storage.open_for_reading(name) as stored:
        stored.seek(2)
        assert stored.readline() == b"1\n"
    assert sorted(storage.listdir("exports/1/")) == ["a.part", "b.part"]
    storage.delete(name)
    assert storage.listdir("exports/1/") == ["b.part"]
    assert type(storage.backend()) is (S3Store if backend == "s3" else LocalDiskStore)


def content_type_of(s3, name: str) -> str:
    return s3.client.head_object(Bucket=s3.name, Key=f"{s3.prefix}/{name}")["ContentType"]


def test_objects_are_stored_under_the_names_the_callers_give(s3, settings):
    """The caller chooses the name, extension included; the store only adds its prefix, and
    the Content-Type follows the extension, whether the content is a PUT or a multipart upload."""
    settings.LONG_TASK_S3_PART_BYTES = 5 * MiB
    assert storage.save("results/7/out.json", b"{}") == "results/7/out.json"
    assert storage.save("results/7/rows.tsv", Stream(b"a\tb\n")) == "results/7/rows.tsv"
    assert storage.save("exports/7/1.part", b"x") == "exports/7/1.part"
    target = storage.upload_target(
        "incoming/people.txt", file_name="people.csv", content_type="text/csv", charset=None, content_type_extra=None
    )
    target.write(b"name\nann\n")
    target.finish(9)
    assert storage.store_upload(target, "not/used/on/s3.csv") == "incoming/people.txt"
    target.close()  # kept: closing the request's file leaves it
    assert s3.all_keys() == [
        "files/exports/7/1.part",
        "files/incoming/people.txt",
        "files/results/7/out.json",
        "files/results/7/rows.tsv",
    ]
    assert [content_type_of(s3, name) for name in ("results/7/out.json", "results/7/rows.tsv")] == [
        "application/json",
        "text/tab-separated-values",
    ]
    assert content_type_of(s3, "exports/7/1.part") == "application/octet-stream"
    assert content_type_of(s3, "incoming/people.txt") == "text/plain"
    assert s3.read("incoming/people.txt") == b"name\nann\n"


def test_a_spooled_upload_is_stored_under_the_name_its_operation_gives():
    """Local disk: the upload waits in a temporary file, renamed to the name `store_upload` gets."""
    target = storage.upload_target(
        "uploads/ignored.csv", file_name="people.csv", content_type="text/csv", charset=None, content_type_extra=None
    )
    target.write(b"name\nann\n")
    target.finish(9)
    assert storage.store_upload(target, "uploads/7-abc.tsv") == "uploads/7-abc.tsv"
    target.close()
    assert storage.listdir("uploads/") == ["7-abc.tsv"]
    with storage.open_for_reading("uploads/7-abc.tsv") as stored:
        assert stored.read() == b"name\nann\n"
