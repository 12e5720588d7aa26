"""How a chunk's rows are sorted into those a target's table takes and those its unique keys
refuse before they are written (PostgreSQL), and the staging table that decides when that
sorting missed a collision: the verdicts and reasons stay those of the table itself. The
screen looks up only the keys its filter may have seen (targets/screen.py): the tests of keys
it never saw run on both databases, whose verdicts must be the same."""

import operator

import pytest
from django.db import connection

from contacts.models import Contact
from operations import stop_requests, worker
from operations.models import Operation
from operations.targets import screen, store
from tests.api.test_targets import S as State
from tests.api.test_targets import csv_text, errors, imported, people, request, start

postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the screen is PostgreSQL's")


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_key_the_screen_did_not_see_taken_still_refuses_its_row_only(api, chunks, monkeypatch):
    # As if another writer stored the keys between the screen's look-up and the COPY.
    monkeypatch.setattr(screen.Screen, "_held", lambda self, cursor, k, keys: set())
    Contact.objects.create(name="Mine", email="p2@example.com")
    chunks.size = 3
    rows = people(5)
    rows[3][1] = "p1@example.com"
    op_id = start(api, b"name,email,phone,city,signup_date,score\n" + _csv(rows))
    worker.work_operation(op_id)
    assert [line for line, *_ in imported(op_id)] == [1, 3, 5]
    assert errors(op_id) == [
        (2, 'email: "p2@example.com" is already in the table'),
        (4, 'email: "p1@example.com" is already in line 1 of this file'),
    ]


def _not_staged(self, cursor, held):
    raise AssertionError("a chunk went through the staging table")


def _csv(rows: list[list[str]]) -> bytes:
    return "".join(",".join(row) + "\n" for row in rows).encode()


def _screen(keys: list[tuple[int, ...]], held: list[set]) -> screen.Screen:
    """A screen of rows `line\\tkey fields...` with these keys (slots), whose look-ups in the
    table find `held`."""
    sorter = object.__new__(screen.Screen)
    sorter.slots = keys
    sorter.getters = [operator.itemgetter(*slots) for slots in keys]
    sorter.null_free = [screen._single_not_null if len(s) == 1 else screen._none_null for s in keys]
    sorter.width = 1 + max(max(slots) for slots in keys)
    sorter._held = lambda cursor, k, column: set(column) & held[k]
    sorter.seen = screen.SeenKeys(1 << 24)  # two of these few keys in one slot: unlikely whatever the hash seed
    sorter.key_is_last = False
    return sorter


def _rows(*rows: str) -> list[bytes]:
    return [f"7\t{line}\t{fields}\n".encode() for line, fields in enumerate(rows, 1)]


def test_the_first_row_with_a_key_wins_and_a_null_collides_with_nothing():
    sorter = _screen([(2,), (3, 4)], [{b"held"}, {(b"x", b"y")}])
    rows = _rows(
        *("a\tb\tc", "a\tb\t\\N", "held\tq\tr", "\\N\tb\t\\N", "\\N\tx\ty"),
        *("e\tb\tc", "\\N\tb\tc", "a\tz\tz", "e\tm\tn", "\\N\tb\t\\N"),
    )
    kept, refused = sorter.sort(None, rows)
    # 2 and 8: line 1 holds their first key; 6 and 7 its second. 3 and 5: the table holds one.
    # 9: line 6 was refused, so its first key is free. 4 and 10: a NULL in a key.
    assert kept == [rows[0], rows[3], rows[8], rows[9]]
    assert [int(fields[1]) for fields in refused] == [2, 3, 5, 6, 7, 8]
    # Speculating with a fresh filter: the same, but the keys the table holds (3, 5) are not
    # looked up, and left to the COPY.
    sorter = _screen([(2,), (3, 4)], [{b"held"}, {(b"x", b"y")}])
    kept, refused = sorter.sort(None, rows, look_up_all=False)
    assert kept == [rows[i] for i in (0, 2, 3, 4, 8, 9)]
    assert [int(fields[1]) for fields in refused] == [2, 6, 7, 8]


@pytest.mark.parametrize("key_is_last", [False, True], ids=["key inside", "key last"])
def test_a_single_key_is_refused_only_if_looked_up_or_repeated(key_is_last):
    table = {b"held"}
    sorter = _screen([(4 if key_is_last else 2,)], [table])
    sorter.key_is_last = key_is_last

    def rows(*keys: str) -> list[bytes]:
        return _rows(*((f"q\tr\t{key}" if key_is_last else f"{key}\tq\tr") for key in keys))

    def lines(refused):
        return [int(fields[1]) for fields in refused]

    first = rows("k1", "k2", "k1", "\\N", "\\N", "held")
    kept, refused = sorter.sort(None, first, look_up_all=False)
    # 3 repeats line 1; "held" is new to the filter, so only the COPY can refuse it (and would).
    assert (kept, lines(refused)) == ([first[i] for i in (0, 1, 3, 4, 5)], [3])
    table |= {b"k1", b"k2"}
    second = rows("k2", "k3", "held")
    for look_up_all in (False, True):  # an earlier chunk's keys: the filter's suspects are looked up
        kept, refused = sorter.sort(None, second, look_up_all=look_up_all)
        assert (kept, lines(refused)) == ([second[1]], [1, 3])


def test_a_long_chunk_is_sorted_by_slices_and_a_cancel_ends_the_sort_between_two(monkeypatch):
    size = screen.ROWS_A_SLICE
    sorter = _screen([(2,)], [set()])
    rows = _rows(*(f"k{n % (size + 5)}\tq\tr" for n in range(2 * size)))
    kept, refused = sorter.sort(None, rows, look_up_all=False)
    # Lines size + 6 on repeat the keys of the first slice's first lines.
    assert kept == rows[: size + 5]
    assert [int(fields[1]) for fields in refused] == list(range(size + 6, 2 * size + 1))

    checks = []

    def check_chunk():
        checks.append(len(checks))
        if len(checks) == 3:  # the sort's own, the first slice's, the second's
            raise stop_requests.ChunkCancelled

    monkeypatch.setattr(stop_requests, "check_chunk", check_chunk)
    with pytest.raises(stop_requests.ChunkCancelled):
        sorter.sort(None, rows)


@pytest.mark.django_db(transaction=True)
def test_keys_with_copy_escapes_are_looked_up_as_stored(api, chunks, monkeypatch):
    monkeypatch.setattr(store.TargetTable, "_staged", _not_staged)  # the screen alone sorts these rows
    Contact.objects.create(name="Mine", email='"a\\b"@example.com')
    chunks.size = 2
    rows = [
        ["A", '"a\\b"@example.com'],
        ["C", '"c\\d"@example.com'],
        ["P", "p@example.com"],
        ["C2", '"c\\d"@example.com'],
    ]
    content = "name,email\n" + "".join(f'{name},"{email.replace(chr(34), chr(34) * 2)}"\n' for name, email in rows)
    op_id = start(api, content.encode())
    worker.work_operation(op_id)
    assert [(line, email) for line, _, email, *_ in imported(op_id)] == [
        (2, '"c\\d"@example.com'),
        (3, "p@example.com"),
    ]
    assert errors(op_id) == [
        (1, 'email: "\\"a\\\\b\\"@example.com" is already in the table'),
        (4, 'email: "\\"c\\\\d\\"@example.com" is already in line 2 of this file'),
    ]


@pytest.fixture
def misses(monkeypatch) -> list[int]:
    """One item for each speculative COPY that met a key the screen's filter had not seen."""
    found: list[int] = []
    missed = screen.Speculation.missed

    def spy(self):
        found.append(len(found) + 1)
        missed(self)

    monkeypatch.setattr(screen.Speculation, "missed", spy)
    return found


@pytest.mark.django_db(transaction=True)
def test_keys_the_worker_never_saw_are_refused_as_the_table_holds_them(api, chunks, monkeypatch, misses):
    # Another import's keys, the application's before the import and during it: the filter saw
    # none of them; the look-up of every key after the failed COPY finds them (no staging).
    monkeypatch.setattr(store.TargetTable, "_staged", _not_staged)
    chunks.size = 2
    other = start(api, csv_text(people(3)))
    worker.work_operation(other)
    Contact.objects.create(name="Mine", email="p5@example.com")
    op_id = start(api, csv_text(people(10)))
    chunks.count = 0
    chunks.after_chunk = lambda count: count == 2 and Contact.objects.create(name="App", email="p8@example.com")
    worker.work_operation(op_id)
    assert [line for line, *_ in imported(op_id)] == [4, 6, 7, 9, 10]
    assert errors(op_id) == [
        *((line, f'email: "p{line}@example.com" is already in the table') for line in (1, 2, 3, 5, 8)),
    ]
    if connection.vendor == "postgresql":
        assert misses  # the guess was wrong, and the COPY said so


@pytest.mark.django_db(transaction=True)
def test_a_repeat_of_a_key_stored_before_a_restart_names_its_line(api, chunks, misses):
    # The job that stored line 1 is gone (paused here; killed, it is the same): the next job's
    # filter never saw its key.
    chunks.size = 2
    rows = people(6)
    rows[4][1] = "p1@example.com"
    op_id = start(api, csv_text(rows))
    chunks.count = 0
    chunks.after_chunk = lambda count: count == 1 and request(api, "pause", op_id)
    worker.work_operation(op_id)
    assert Operation.objects.get(pk=op_id).state == State.PAUSED
    chunks.after_chunk = None
    request(api, "resume", op_id)
    worker.work_operation(op_id)
    assert Operation.objects.get(pk=op_id).state == State.COMPLETED
    assert [line for line, *_ in imported(op_id)] == [1, 2, 3, 4, 6]
    assert errors(op_id) == [(5, 'email: "p1@example.com" is already in line 1 of this file')]
    if connection.vendor == "postgresql":
        assert misses == [1]


@pytest.mark.django_db(transaction=True)
def test_a_file_imported_again_is_refused_whole_without_a_failed_copy_a_chunk(api, chunks, misses):
    chunks.size = 2
    content = csv_text(people(14))
    first = start(api, content)
    worker.work_operation(first)
    again = start(api, content)
    worker.work_operation(again)
    assert imported(again) == []
    assert errors(again) == [(line, f'email: "p{line}@example.com" is already in the table') for line in range(1, 15)]
    if connection.vendor == "postgresql":
        # 7 chunks: a miss, a chunk that looks every key up, a miss, two such chunks, a miss, one.
        assert len(misses) == 3


def test_after_each_miss_in_a_row_twice_as_many_chunks_look_every_key_up():
    speculation = screen.Speculation()
    plan = []
    for _ in range(300):
        speculating = speculation.next_chunk()
        plan.append(speculating)
        if speculating:
            speculation.missed()
    runs = [len(run) for run in "".join("s" if s else "." for s in plan).split("s")[1:-1]]
    assert runs[:8] == [1, 2, 4, 8, 16, 32, 64, 64]
    speculation.held()
    speculation.missed()
    assert [speculation.next_chunk() for _ in range(2)] == [False, True]


def test_the_seen_keys_never_forget_a_key():
    seen = screen.SeenKeys(1 << 10)  # small: many keys share a slot
    keys = [f"k{i}".encode() for i in range(3000)]
    assert seen.mark(keys[:1000]) != keys[:1000]  # most are new
    assert seen.mark(keys[:1000]) == keys[:1000]
    assert seen.mark([b"x", b"x"])[-1:] == [b"x"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("rows_a_statement", [1, 2, 3, 256])
def test_refused_rows_are_found_whatever_the_parts_a_chunk_is_inserted_by(api, chunks, monkeypatch, rows_a_statement):
    # SQLite inserts a chunk by parts, and looks up the lines of a part that fell short only.
    monkeypatch.setattr(store, "ROWS_A_STATEMENT", rows_a_statement)
    chunks.size = 100
    Contact.objects.create(name="Mine", email="p9@example.com")
    rows = people(9)
    rows[3][1], rows[4][5], rows[7][1] = "p1@example.com", "x", "p3@example.com"
    op_id = start(api, _header() + _csv(rows))
    worker.work_operation(op_id)
    assert [line for line, *_ in imported(op_id)] == [1, 2, 3, 6, 7]
    assert errors(op_id) == [
        (4, 'email: "p1@example.com" is already in line 1 of this file'),
        (5, 'score: "x" is not an integer'),
        (8, 'email: "p3@example.com" is already in line 3 of this file'),
        (9, 'email: "p9@example.com" is already in the table'),
    ]


def _header() -> bytes:
    return b"name,email,phone,city,signup_date,score\n"
