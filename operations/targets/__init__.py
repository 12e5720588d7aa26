"""Imports into the application's own tables (SPEC §13): declare a `Target` for a model that
inherits `ImportedRow`, `register` it in an AppConfig.ready(), and an Upload registered with
`target=<name>` writes typed, validated rows into that model's table (docs/import-targets.md).

- declare.py: `Target`, `Column`, `ImportedRow`, the registry, a file's header checked into a
  `Plan` (which column fills which field);
- convert.py: text to typed columns, a function per field made once an import;
- emails.py: the e-mail check, Django's validator with a quicker way to its verdict;
- store.py: the rows written through the driver, unique violations as row errors, terminate;
- read.py: the rows read back, typed.
"""

from operations.targets.declare import (
    LINE_FIELD,
    OPERATION_FIELD,
    Column,
    ImportedRow,
    Plan,
    Target,
    get,
    names,
    register,
    unregister,
)
from operations.targets.read import ImportedRows

__all__ = [
    "LINE_FIELD",
    "OPERATION_FIELD",
    "Column",
    "ImportedRow",
    "ImportedRows",
    "Plan",
    "Target",
    "get",
    "imported_rows",
    "names",
    "plan_of",
    "register",
    "unregister",
]


def plan_of(op) -> tuple[Target, Plan] | None:
    """The target and plan of an Upload operation that imports into a target and has read its
    header; None otherwise (an import into UploadedRow, or not started yet)."""
    name = (op.options or {}).get("target")
    if not name or op.columns is None:
        return None
    target = get(name)
    return target, target.plan(op.columns, mapping=op.options.get("mapping"))


def imported_rows(op) -> ImportedRows | None:
    """The rows of a target import, to read back (None: not one, or no header yet)."""
    planned = plan_of(op)
    return None if planned is None else ImportedRows(*planned, op.pk)
