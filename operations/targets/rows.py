"""A row of CSV fields to a row of a target's table, on the hot path (SPEC §13).

The code of a row is generated once an import, from the cells' converters (targets/convert.py).
It spells out inline what each converter does with a common cell (`CommonCell`: a text that
needs no care, a value that parses at once) and calls the converter only for the others: a call
a cell cost more than the rest of the cell's conversion. Should that inline code raise (a bad
value, or one that only the converter's slower ways parse, such as a date without leading
zeros), the row is converted again by the converters themselves, which decide; a row they
refuse too is looked at cell by cell for the reason (the rare path).
"""

import math
from collections.abc import Callable, Sequence

from django.db import connection

from operations.targets.convert import CommonCell, explain, quoted, raw_line
from operations.targets.emails import MOST_CHARACTERS


class RowConverter:
    """`to_row(line, fields)` for CsvRecords: a row of the target's columns as the driver takes
    it (PostgreSQL: a line of COPY text, `prefix`, `line`, the fields, `suffix`; elsewhere a
    tuple `operation, line, *fields, *fixed`), or None for a row that does not convert, whose
    row error goes to `errors` as (line, reason, raw text)."""

    def __init__(
        self,
        converters: Sequence[Callable[[str], object]],
        indexes: Sequence[int],
        columns: Sequence[str],
        *,
        operation_id: int,
        fixed: Sequence[object] = (),
        prefix: str = "",
        suffix: str = "",
    ):
        self.converters, self.indexes, self.columns = list(converters), list(indexes), list(columns)
        self.errors: list[tuple[int, str, str]] = []
        scope = {
            "prefix": prefix,
            "suffix": suffix,
            "operation_id": operation_id,
            "fixed": tuple(fixed),
            "reject": self.reject,
            **{f"c{i}": c for i, c in enumerate(converters)},
        }
        values = [f"c{i}(f[{index}])" for i, index in enumerate(indexes)]
        exact = _function("convert_exactly", [], _returned(values), "return reject(line, f)")
        exec(exact, scope)  # noqa: S102 (our own source: indexes and names, no data)
        self.convert_exactly: Callable[[int, Sequence[str]], object] = scope["convert_exactly"]
        inline: list[str] = []
        for i, (convert, index) in enumerate(zip(converters, indexes, strict=True)):
            common = getattr(convert, "common", None)
            if common is not None:
                inline += _common_cell(i, index, common, scope)
                values[i] = f"v{i}"
        fast = _function("to_row", inline, _returned(values), "return convert_exactly(line, f)")
        exec(fast, scope)  # noqa: S102 (as above)
        self.to_row: Callable[[int, Sequence[str]], object] = scope["to_row"]

    def reject(self, line: int, fields: Sequence[str]) -> None:
        reasons = []
        for convert, index, column in zip(self.converters, self.indexes, self.columns, strict=True):
            text = fields[index]
            reason = explain(convert, text)
            if reason:
                reasons.append(f"{column}: {quoted(text)} {reason}")
        self.errors.append((line, "; ".join(reasons) or "the row does not convert", raw_line(fields)))


def _function(name: str, statements: list[str], returned: str, on_error: str) -> str:
    body = "".join(f"        {statement}\n" for statement in statements)
    return f"def {name}(line, f):\n    try:\n{body}        {returned}\n    except Exception:\n        {on_error}\n"


def _returned(values: list[str]) -> str:
    if connection.vendor == "postgresql":
        # An f-string (the constants as names of the scope): about half the cost of `%`.
        fields = "\\t".join(["{prefix}{line}", *(f"{{{value}}}" for value in values)])
        return f'return f"{fields}{{suffix}}\\n".encode()'
    return f"return (operation_id, line, {', '.join(values)}, *fixed)"


def _common_cell(i: int, index: int, common: CommonCell, scope: dict) -> list[str]:
    """Statements that leave in `v{i}` what converter `c{i}` makes of field `index`, its names
    added to `scope`."""
    v = f"v{i}"
    checks = []
    for j, check in enumerate(common.checks):
        scope[f"k{i}_{j}"] = check
        checks += _check(f"k{i}_{j}", v, check, scope, longest=common.max_length if common.text else None)
    if common.text:
        unusual = [f"not {v}"]
        if common.max_length is not None:
            unusual.append(f"len({v}) > {common.max_length}")
        # `isprintable` is false for a tab, a line break and a NUL: COPY's escapes but the backslash.
        unusual += [f'"\\\\" in {v}', f"not {v}.isprintable()"] if common.copy_text else [f'"\\x00" in {v}']
        return [
            f"{v} = f[{index}]",
            f"if {' or '.join(unusual)}:",
            f"    {v} = c{i}({v})",
            *(checks and ["else:", *checks]),
        ]
    scope[f"p{i}"] = common.parse
    # Every parser refuses a cell of spaces only, which the converter makes empty.
    lines = [f"{v} = f[{index}]", f"if {v}:", f"    {v} = p{i}({v})"]
    if common.low is not None or common.high is not None:
        scope[f"lo{i}"] = -math.inf if common.low is None else common.low
        scope[f"hi{i}"] = math.inf if common.high is None else common.high
        lines.append(f"    if {v} < lo{i} or {v} > hi{i}: raise ValueError")
    lines += checks
    if common.out is not None:
        scope[f"o{i}"] = common.out
        lines.append(f"    {v} = o{i}({v})")
    return [*lines, "else:", f"    {v} = c{i}({v})"]


def _check(name: str, v: str, check: Callable, scope: dict, *, longest: int | None) -> list[str]:
    """Statements that call `check` (as `name`) on `v`, or the e-mail check's common case
    spelled out (targets/emails.py) and the check called for the others. `longest`: the most
    characters `v` can have there, if known."""
    passes_at_once = getattr(check, "passes_at_once", None)
    if passes_at_once is None:
        return [f"    {name}({v})"]
    scope[f"{name}_user"], scope[f"{name}_domains"] = passes_at_once
    short = "" if longest is not None and longest <= MOST_CHARACTERS else f" and len({v}) <= {MOST_CHARACTERS}"
    return [
        f'    user, at, domain = {v}.rpartition("@")',
        f"    if not (at{short} and {name}_user(user) and {name}_domains.get(domain)):",
        f"        {name}({v})",
    ]
