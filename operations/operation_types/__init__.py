"""Operation types behind one interface (`base.OperationType`), found by name in `registry`."""

from operations.operation_types import registry
from operations.operation_types.upload import Upload

registry.register(Upload())

__all__ = ["registry"]
