"""Registered operation types, by name. Register one with `register(MyType())` in an
AppConfig.ready() (see docs/operation-types.md); the built-in ones are registered in
`OperationsConfig.ready()`."""

from operations.errors import BadInput
from operations.operation_types.base import OperationType

_types: dict[str, OperationType] = {}


def register(op_type: OperationType) -> OperationType:
    _types[op_type.name] = op_type
    return op_type


def unregister(name: str) -> None:
    _types.pop(name, None)


def get(name: str) -> OperationType:
    """The type called `name`; BadInput (400) with the known names otherwise."""
    try:
        return _types[name]
    except KeyError:
        raise BadInput(f"Unknown op_type '{name}'. Known types: {', '.join(names())}") from None


def names() -> list[str]:
    return sorted(_types)
