"""Registered operation types, by name. Add one with `register(MyType())` in an AppConfig.ready()."""

from operations.errors import BadInput
from operations.operation_types.base import OperationType

_types: dict[str, OperationType] = {}


def register(op_type: OperationType) -> OperationType:
    _types[op_type.name] = op_type
    return op_type


def unregister(name: str) -> None:
    _types.pop(name, None)


def get(name: str) -> OperationType:
    try:
        return _types[name]
    except KeyError:
        raise BadInput(f"Unknown op_type '{name}'") from None


def names() -> list[str]:
    return sorted(_types)
