"""A chunk's rows sorted, before a PostgreSQL import writes them, into those the target's table
takes and those its unique keys refuse (targets/store.py), from their COPY text.

Most chunks' keys are new: the table holds none of them. So the screen keeps a fixed-size
filter of every key it has seen in this process (`SeenKeys`) and looks up in the table only the
keys the filter may have seen: a repeat of an earlier row of the file, or a false positive.
That guess is never trusted for a verdict: a key it misses (a row of another import or of the
application, one this operation stored before a restart, or two texts of equal values) makes
the COPY fail, and the chunk is sorted again with every key looked up (`look_up_all`), as the
next few chunks are (`Speculation`), so that a table that already holds the file's keys does
not pay a failed COPY a chunk.
"""

import itertools
import operator
import re
from collections.abc import Sequence

from django.db import connection

from operations import stop_requests
from operations.targets.convert import PG_NULL
from operations.targets.declare import LINE_FIELD, OPERATION_FIELD, Target

PG_NULL_BYTES = PG_NULL.encode()
# The seen keys' filter: a bit a hash slot, a fixed size whatever the file (the worker's memory
# must not grow with it); at a million keys about 3 % of new keys are looked up in vain.
SEEN_KEY_BITS = 1 << 25  # 4 MiB
# The keys of a chunk are taken out and marked this many rows at a time, a stop request heard
# between two (stop_requests.check_chunk): a long chunk's sort is no wait for a pause.
ROWS_A_SLICE = 2048
# After a speculative COPY failed, this many chunks look every key up, twice as many after each
# further failure, up to the most.
FIRST_FULL_LOOKUPS, MOST_FULL_LOOKUPS = 1, 64


class SeenKeys:
    """An approximate set of keys, of a fixed size: `mark` may say a key was seen when it was
    not (two keys in one slot), never the contrary within this process."""

    def __init__(self, bits: int = SEEN_KEY_BITS):
        self.mask = bits - 1  # a power of two
        self.bits = bytearray(bits // 8)

    def mark(self, keys: list) -> list:
        """Mark each key as seen; return those that may have been seen before (an earlier
        chunk's, or an earlier row's of these)."""
        bits, mask = self.bits, self.mask
        again = []
        for key in keys:
            slot = hash(key) & mask  # stable within the process, which the filter never outlives
            byte, bit = slot >> 3, 1 << (slot & 7)
            if bits[byte] & bit:
                again.append(key)
            else:
                bits[byte] |= bit
        return again


class Speculation:
    """Whether the next chunk looks up only the keys the filter may have seen: not for a while
    after that missed a key the table held (the table holds more of them, likely: a file imported
    again), the while doubling with each miss in a row."""

    def __init__(self):
        self.full_lookups_left = 0
        self.after_a_miss = FIRST_FULL_LOOKUPS

    def next_chunk(self) -> bool:
        """True: speculate for the next chunk."""
        if self.full_lookups_left:
            self.full_lookups_left -= 1
            return False
        return True

    def missed(self) -> None:
        self.full_lookups_left = self.after_a_miss
        self.after_a_miss = min(MOST_FULL_LOOKUPS, 2 * self.after_a_miss)

    def held(self) -> None:
        self.after_a_miss = FIRST_FULL_LOOKUPS


class Screen:
    """A chunk's rows sorted, before they are written, into those the table takes and those its
    unique keys refuse, from their COPY text: the first row with a key, in line order, wins over
    the later ones of the chunk and loses to a row the table already holds (one query a key, of
    the keys looked up: see the module). A verdict it misses makes the COPY fail: the caller
    sorts again with `look_up_all`, and if that misses too (two texts of equal values), the
    staging table decides instead."""

    @staticmethod
    def fits(target: Target, copied_fields: list[str]) -> bool:
        """The target has unique keys, and every key's fields are in the COPY text."""
        keys = target.unique_keys()
        return bool(keys) and all(name in copied_fields for key in keys for name in key)

    def __init__(self, target: Target, copied_fields: list[str], file_fields: Sequence[str]):
        q = connection.ops.quote_name
        meta = target.model._meta
        keys = target.unique_keys()
        self.slots = [tuple(copied_fields.index(name) for name in key) for key in keys]
        self.getters = [operator.itemgetter(*slots) for slots in self.slots]
        self.null_free = [_single_not_null if len(slots) == 1 else _none_null for slots in self.slots]
        self.lookups = [self._lookup(q, meta, key) for key in keys]
        self.width = 1 + max([1, *itertools.chain.from_iterable(self.slots)])  # the fields to split off
        self.key_is_last = self.width == len(copied_fields)
        self._reasons_query(q, meta, keys, copied_fields, file_fields)
        self.seen: SeenKeys | None = None  # made at the first chunk: a dry run never sorts
        self.speculation = Speculation()
        # The look-ups' estimated cost grows with a chunk's keys, past jit_above_cost at a few
        # thousand: compiling the query then took many times the look-up itself, and a cancel
        # (a pause, stop_requests.py) waits for the compilation. This connection imports.
        with connection.cursor() as cursor:
            cursor.execute("SET jit = off")

    def _reasons_query(self, q, meta, keys, copied_fields: list[str], file_fields: Sequence[str]) -> None:
        """What a refused row's reason needs (`TargetTable._refused`), in one query for the
        chunk's refused rows: the values of the file's fields in a key as the table's columns
        hold them, and for each key made of them the row of the table that holds it (as
        `TargetTable._holder`, once the chunk's rows are in)."""
        self.shown = sorted({name for key in keys for name in key if name in file_fields})
        self.shown_slots = [copied_fields.index(name) for name in self.shown]
        self.reasoned = [index for index, key in enumerate(keys) if all(name in self.shown for name in key)]
        typed = {n: f"k.v{i}::{meta.get_field(n).cast_db_type(connection)}" for i, n in enumerate(self.shown)}
        operation, line = (q(meta.get_field(name).column) for name in (OPERATION_FIELD, LINE_FIELD))
        holders = "".join(
            f" LEFT JOIN LATERAL (SELECT true AS found, t.{operation} AS operation, t.{line} AS line"
            f" FROM {q(meta.db_table)} t WHERE "
            + " AND ".join(f"t.{q(meta.get_field(n).column)} = {typed[n]}" for n in keys[index])
            + f" LIMIT 1) AS h{index} ON true"
            for index in self.reasoned
        )
        picked = [*typed.values(), *(f"h{i}.found, h{i}.operation, h{i}.line" for i in self.reasoned)]
        texts = ", ".join(["%s::text[]"] * len(self.shown))
        names = ", ".join(f"v{i}" for i in range(len(self.shown)))
        self.reasons_sql = (
            f"SELECT {', '.join(picked)} FROM unnest({texts}) WITH ORDINALITY AS k({names}, i){holders} ORDER BY k.i"
        )

    @staticmethod
    def _lookup(q, meta, key: Sequence[str]) -> str:
        """SQL: the (1-based) places of the values (`_held`'s) that a row of the table holds.
        One probe of the key's unique index a value (a LATERAL subquery with LIMIT is not turned
        into a join): as a semi-join, a table whose statistics are behind (emptied, vacuumed)
        would be scanned whole for each chunk."""
        fields = [meta.get_field(name) for name in key]
        texts = ", ".join(["string_to_array(%s::text, E'\\n') || %s::text[]"] * len(key))
        names = ", ".join(f"v{i}" for i in range(len(key)))
        match = " AND ".join(f"t.{q(f.column)} = k.v{i}::{f.cast_db_type(connection)}" for i, f in enumerate(fields))
        return (
            f"SELECT k.i FROM unnest({texts}) WITH ORDINALITY AS k({names}, i)"
            f", LATERAL (SELECT 1 FROM {q(meta.db_table)} t WHERE {match} LIMIT 1) AS found"
        )

    def sort(self, cursor, rows: list[bytes], *, look_up_all: bool = True) -> tuple[list[bytes], list[list[bytes]]]:
        """The rows the table takes, and the fields of those it refuses, both in line order.
        `look_up_all`: every key is looked up in the table, not only those the filter may have
        seen (whose verdicts are then a guess that the COPY checks)."""
        if self.seen is None:
            self.seen = SeenKeys()
        stop_requests.check_chunk()
        if len(self.slots) == 1 and len(self.slots[0]) == 1:
            return self._sort_by_one_value(cursor, rows, look_up_all)
        split = [row[:-1].split(b"\t", self.width) for row in rows]
        keys = [list(map(get, split)) for get in self.getters]  # a column of values a key
        # Every key is marked, looked up or not: a later chunk's repeat of it must be looked up.
        maybe_seen = [self.seen.mark(column) for column in keys]
        held = [self._held(cursor, k, keys[k] if look_up_all else maybe_seen[k]) for k in range(len(keys))]
        kept: list[bytes] = []
        refused: list[list[bytes]] = []
        # A NULL in a key collides with nothing: such a key may go into `held`, but a hit on it is no collision.
        pairs = list(zip(held, self.null_free, strict=True))
        for row, fields, row_keys in zip(rows, split, zip(*keys, strict=True), strict=True):
            if any(key in values and null_free(key) for key, (values, null_free) in zip(row_keys, pairs, strict=True)):
                refused.append(fields)
                continue
            kept.append(row)
            for key, values in zip(row_keys, held, strict=True):
                values.add(key)
        return kept, refused

    def _sort_by_one_value(self, cursor, rows: list[bytes], look_up_all: bool) -> tuple[list, list]:
        """`sort` for the common case, a single key of one field. Only the key's values are
        kept a row (a list of fields a row, alive for the chunk, made the garbage collector's
        young generations scan them and pass them on to the old one), the fields of a refused
        row split again; and only a key the filter may have seen (a suspect) can be refused."""
        slot, end = self.slots[0][0], (-1 if self.key_is_last else None)  # the last field ends with "\n"
        keys: list[bytes] = []
        maybe_seen: list[bytes] = []
        for start in range(0, len(rows), ROWS_A_SLICE):
            stop_requests.check_chunk()
            part = [row[:end].split(b"\t", slot + 1)[slot] for row in rows[start : start + ROWS_A_SLICE]]
            # Every key is marked, looked up or not: a later chunk's repeat of it must be looked up.
            maybe_seen += self.seen.mark(part)
            keys += part
        held = self._held(cursor, 0, keys if look_up_all else maybe_seen)
        suspects = None if look_up_all else set(maybe_seen)
        if suspects is not None and not suspects:
            return rows, []  # every key new to this process: the COPY alone can refuse a row
        kept: list[bytes] = []
        refused: list[list[bytes]] = []
        null_free = self.null_free[0]  # a NULL collides with nothing: it may be in `held`
        for row, key in zip(rows, keys, strict=True):
            if suspects is None or key in suspects:
                if key in held and null_free(key):
                    refused.append(row[:-1].split(b"\t", self.width))
                    continue
                held.add(key)
            kept.append(row)
        return kept, refused

    def _held(self, cursor, k: int, keys: list) -> set:
        """Those of `keys` (key k's values, COPY text) that a row of the table holds."""
        null_free = self.null_free[k]
        distinct = [key for key in set(keys) if null_free(key)]
        if not distinct:
            return set()
        # Each of the key's columns goes as one text of the values that need no unescaping, a
        # line each (COPY's text has no line breaks), then an array of the others.
        if len(self.slots[k]) == 1:
            plain = [key for key in distinct if key and b"\\" not in key]
            others = [key for key in distinct if not key or b"\\" in key]
            params = [b"\n".join(plain).decode(), [_copy_value(key) for key in others]]
        else:
            plain = [key for key in distinct if all(value and b"\\" not in value for value in key)]
            others = [key for key in distinct if not all(value and b"\\" not in value for value in key)]
            params = []
            for i in range(len(self.slots[k])):
                params += [b"\n".join(key[i] for key in plain).decode(), [_copy_value(key[i]) for key in others]]
        ordered = plain + others
        import psycopg

        # Bound on the server and prepared: the statement is the same each chunk.
        with psycopg.Cursor(cursor.connection) as bound:
            bound.execute(self.lookups[k], params, prepare=True)
            return {ordered[i - 1] for (i,) in bound.fetchall()}

    def reasons(self, cursor, refused: list[list[bytes]]) -> list[tuple[int, dict, dict]]:
        """(line, {field: value}, {key index: (operation, line) of its holder, or None}) of
        the refused rows (`_reasons_query`)."""
        lines = [int(fields[1]) for fields in refused]
        if not refused or not self.shown:
            return [(line, {}, {}) for line in lines]
        columns = [[_copy_value(fields[slot]) for fields in refused] for slot in self.shown_slots]
        cursor.execute(self.reasons_sql, columns)
        width, found = len(self.shown), []
        for line, row in zip(lines, cursor.fetchall(), strict=True):
            holders = {
                index: tuple(row[at + 1 : at + 3]) if row[at] else None
                for index, at in zip(self.reasoned, range(width, len(row), 3), strict=True)
            }
            found.append((line, dict(zip(self.shown, row[:width], strict=True)), holders))
        return found


_COPY_UNESCAPES = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}
_copy_escape = re.compile(r"\\[\\tnr]")


def _single_not_null(value: bytes) -> bool:
    return value != PG_NULL_BYTES


def _none_null(values: tuple[bytes, ...]) -> bool:
    return PG_NULL_BYTES not in values


def _copy_value(text: bytes) -> str | None:
    """A field of COPY's text format (as `copy_text` writes it) read back."""
    if text == PG_NULL_BYTES:
        return None
    value = text.decode()
    if "\\" in value:
        value = _copy_escape.sub(lambda found: _COPY_UNESCAPES[found.group()], value)
    return value
