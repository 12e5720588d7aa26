"""Targets: Django models that an Upload may import into (SPEC §13), declared in code.

A target names a model, the fields a CSV file fills in, the column each comes from by default
and whether it is required, like django-import-export's `ModelResource` with its `fields`. The
model keeps, for every row an import wrote, the operation and the line it came from (the
abstract `ImportedRow` gives it both, unique together): that is what makes an import exact in
the model's own table (SPEC §4) and what a terminate deletes. Rows the application writes
itself leave them NULL, so no import ever touches them.

The key of the table is the model's own: every unique constraint holds for imported rows too,
and a row that would break one is a row error, not a failed chunk (targets/store.py).
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils import timezone

from operations.errors import BadInput

OPERATION_FIELD = "import_operation"
LINE_FIELD = "import_line"


class ImportedRow(models.Model):
    """What a target's model adds to its own fields: the import that wrote the row, and the
    row's line in that import's file (both NULL for rows the application wrote). Give the
    model's Meta `constraints = ImportedRow.Meta.constraints` if it declares a Meta of its own."""

    import_operation = models.BigIntegerField(
        null=True, blank=True, editable=False, help_text="The operation that imported this row (NULL: not imported)."
    )
    import_line = models.BigIntegerField(
        null=True, blank=True, editable=False, help_text="The row's line in that operation's file (1 = first data row)."
    )

    class Meta:
        abstract = True
        constraints = [
            # One row a line of an import (I1); its index also serves terminate and read back.
            models.UniqueConstraint(fields=[OPERATION_FIELD, LINE_FIELD], name="%(app_label)s_%(class)s_import_once"),
        ]


@dataclass(frozen=True)
class Column:
    """A field of the target, filled from the CSV column `column` (default: the field's name).
    `required` defaults to the model's: a field that may not be blank."""

    field: str
    column: str = ""
    required: bool | None = None


def normalized(name: str) -> str:
    """A column name as headers are matched: case, spaces, `_` and `-` do not count, so that
    "Signup Date", "signup_date" and "SIGNUPDATE" are one column."""
    return re.sub(r"[\s_\-]+", "", name).casefold()


@dataclass(frozen=True)
class Plan:
    """How one file's columns fill the target's fields: `fields[i]` comes from CSV column
    `indexes[i]` (fields in the target's order); `columns[i]` is that column's name in the file."""

    fields: tuple[str, ...]
    indexes: tuple[int, ...]
    columns: tuple[str, ...]

    def header(self) -> list[str]:
        """The mapped header, in the file's column order: what reading back shows."""
        return [name for _, name in sorted(zip(self.indexes, self.columns, strict=True))]

    def ordered_fields(self) -> list[str]:
        """The fields in the order of `header()`."""
        return [name for _, name in sorted(zip(self.indexes, self.fields, strict=True))]


class Target:
    """An importable model: `Target("contacts", Contact, ["name", Column("email", "E-mail")])`.

    `fields` are field names or `Column`s. Fields the model has but the target does not import
    must be nullable or have a default (computed once a chunk)."""

    def __init__(self, name: str, model: type[models.Model], fields: Iterable[str | Column]):
        self.name = name
        self.model = model
        self.columns = [item if isinstance(item, Column) else Column(item) for item in fields]
        self._check()

    def _check(self) -> None:
        meta = self.model._meta
        names = {f.name for f in meta.concrete_fields}
        if not {OPERATION_FIELD, LINE_FIELD} <= names:
            raise ImproperlyConfigured(f"target {self.name}: {meta.label} must inherit operations.targets.ImportedRow")
        seen: set[str] = set()
        for column in self.columns:
            if column.field not in names or column.field in (OPERATION_FIELD, LINE_FIELD):
                raise ImproperlyConfigured(f"target {self.name}: {meta.label} has no importable field {column.field}")
            if column.field in seen:
                raise ImproperlyConfigured(f"target {self.name}: field {column.field} is listed twice")
            seen.add(column.field)
        defaults = [f.name for f in self.fields_besides(self.field_names) if missing_value(f) is None and not f.null]
        if defaults:
            raise ImproperlyConfigured(
                f"target {self.name}: {meta.label}.{', '.join(defaults)} must be imported,"
                " or be nullable or have a default"
            )

    # --- the model, as the import sees it ---

    def field(self, name: str) -> models.Field:
        return self.model._meta.get_field(name)

    @property
    def field_names(self) -> list[str]:
        return [column.field for column in self.columns]

    def required(self, column: Column) -> bool:
        """Whether a file must have the field's column and every row a value in it: as
        declared, else as the model has it (not blank, or nothing to put in its place)."""
        if column.required is not None:
            return column.required
        field = self.field(column.field)
        return not field.blank or (missing_value(field) is None and not field.null)

    def fields_besides(self, names: Iterable[str]) -> list[models.Field]:
        """The model's concrete fields that an import with these fields leaves to their
        default (all but the primary key, the bookkeeping and those with a database default)."""
        imported = {*names, OPERATION_FIELD, LINE_FIELD}
        return [
            f
            for f in self.model._meta.concrete_fields
            if f.name not in imported
            and not f.primary_key
            and getattr(f, "db_default", models.NOT_PROVIDED) is models.NOT_PROVIDED
        ]

    def unique_keys(self) -> list[tuple[str, ...]]:
        """The model's unique fields and unconditional unique constraints (but the bookkeeping's),
        which can reject a row: for the row error's reason."""
        meta = self.model._meta
        keys = [(f.name,) for f in meta.concrete_fields if f.unique and not f.primary_key]
        keys += [tuple(fields) for fields in meta.unique_together]
        keys += [
            tuple(c.fields) for c in meta.total_unique_constraints if tuple(c.fields) != (OPERATION_FIELD, LINE_FIELD)
        ]
        return keys

    # --- a file's header ---

    def check_mapping(self, mapping: object) -> dict[str, str | None]:
        """The `mapping` option: a JSON object of CSV column names to field names (null: the
        column is not imported). BadInput for anything else."""
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in mapping.items()
        ):
            raise BadInput('mapping must be a JSON object of CSV columns to fields, e.g. {"E-mail": "email"}')
        unknown = sorted({v for v in mapping.values() if v is not None} - set(self.field_names))
        if unknown:
            raise BadInput(
                f"mapping names fields that target {self.name} does not have: {', '.join(unknown)} "
                f"(its fields: {', '.join(self.field_names)})"
            )
        return mapping

    def plan(self, header: Sequence[str], *, mapping: dict | None = None, strict: bool = False) -> Plan:
        """Which column fills which field, for a file with this header; BadInput naming every
        problem: a duplicate column, a mapped column the file lacks, a required field without a
        column, and under `strict` a column that fills no field."""
        given = mapping or {}
        mapping = {normalized(k): v for k, v in given.items()}
        defaults = {normalized(c.column or c.field): c.field for c in self.columns}
        problems, chosen, unknown = [], {}, []
        positions: dict[str, int] = {}
        for index, name in enumerate(header):
            key = normalized(name)
            if key in positions:
                problems.append(f'duplicate column "{name}" (columns {positions[key] + 1} and {index + 1})')
                continue
            positions[key] = index
            field = mapping[key] if key in mapping else defaults.get(key)
            if field is None or (key not in mapping and field in mapping.values()):
                if key not in mapping:
                    unknown.append(name)
                continue
            if field in chosen:
                problems.append(f'columns "{header[chosen[field]]}" and "{name}" both fill field {field}')
                continue
            chosen[field] = index
        missing_mapped = [k for k in given if normalized(k) not in positions]
        if missing_mapped:
            problems.append(f"mapping names columns the file does not have: {', '.join(missing_mapped)}")
        missing = [c.column or c.field for c in self.columns if c.field not in chosen and self.required(c)]
        if missing:
            problems.append(f"missing required columns: {', '.join(missing)}")
        if strict and unknown:
            problems.append(f"unknown columns (strict): {', '.join(unknown)}")
        if problems:
            raise BadInput(f"The header does not fit target {self.name}: {'; '.join(problems)}")
        fields = tuple(name for name in self.field_names if name in chosen)
        indexes = tuple(chosen[name] for name in fields)
        return Plan(fields=fields, indexes=indexes, columns=tuple(header[i] for i in indexes))


def missing_value(field: models.Field, now=None):
    """What a field no column fills gets: what `save()` would give it (its default, "" for
    text; `now` for auto_now and auto_now_add)."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return now or timezone.now()
    return field.get_default()


_targets: dict[str, Target] = {}


def register(target: Target) -> Target:
    """Make `target` importable by name (call it from an AppConfig.ready())."""
    _targets[target.name] = target
    return target


def unregister(name: str) -> None:
    _targets.pop(name, None)


def get(name: object) -> Target:
    """The target called `name`; BadInput (400) naming the known ones otherwise."""
    target = _targets.get(name) if isinstance(name, str) else None
    if target is None:
        raise BadInput(f"Unknown target '{name}'. Known targets: {', '.join(names()) or 'none'}")
    return target


def names() -> list[str]:
    return sorted(_targets)
