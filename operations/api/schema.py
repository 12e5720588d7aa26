"""The OpenAPI schema's last touches (a drf-spectacular postprocessing hook): every error an
action can answer, with the one error body `{"message"}`, and ids as the positive integers
they are, and op_type as the enum of the registered types. Per action, a client can then rely
on the schema for every status it may receive."""

from operations.operation_types import registry
from operations.params import MAX_ID

MESSAGE = {"$ref": "#/components/schemas/Message"}
ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_ID}

ERRORS = {
    400: "Bad input: the message says which parameter and why",
    401: "Not authenticated",
    403: "Not allowed (e.g. another user's operation seen but not controllable, a missing CSRF token)",
    404: "No such operation, or one the caller may not see (or no such page)",
    406: "The Accept header asks for a format the API does not give",
    429: (
        "Throttled, or a quota reached: Retry-After says when to try again where waiting helps "
        "(not for registered operations that never started: start or terminate some)"
    ),
}
WRITE_ERRORS = {
    409: "The operation's state does not allow it",
    413: "The body or the file is too large",
    415: "The body's Content-Type is not JSON, form or multipart",
}


def add_errors_and_bounds(result, generator, request, public):
    """drf-spectacular's postprocessing hook: the errors and bounds above, on every action."""
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                _bound_parameter(parameter)
            _add_errors(operation, _errors_of(path, method))
    for name, schema in result.get("components", {}).get("schemas", {}).items():
        _bound_properties(name, schema.get("properties", {}))
    return result


def _bound_parameter(parameter: dict) -> None:
    """An id as a positive integer, op_type as the enum of the types, wait as not negative."""
    if parameter["name"] in ("id", "op_id"):
        parameter["schema"] = dict(ID_SCHEMA)
    elif parameter["name"] == "op_type":
        parameter["schema"] = {"type": "string", "enum": registry.names()}
    elif parameter["name"] == "wait":
        parameter["schema"]["minimum"] = 0


def _errors_of(path: str, method: str) -> dict[int, str]:
    """The error statuses an action may answer, with their descriptions."""
    errors = dict(ERRORS)
    if method == "post":
        errors.update(WRITE_ERRORS)
    if path.endswith("/download/"):
        errors[409] = "The file cannot be downloaded in the operation's state"
    return errors


def _add_errors(operation: dict, errors: dict[int, str]) -> None:
    responses = operation.setdefault("responses", {})
    for code, description in errors.items():
        responses.setdefault(
            str(code), {"content": {"application/json": {"schema": MESSAGE}}, "description": description}
        )


def _bound_properties(name: str, properties: dict) -> None:
    """The same bounds as `_bound_parameter`, on the fields of a request or response body."""
    op_id = properties.get("op_id")
    if op_id is not None and op_id.get("type") == "integer":
        op_id.update(minimum=1, maximum=MAX_ID)
    if "wait" in properties:
        properties["wait"]["minimum"] = 0
    # The types registered when the schema is made (types register in AppConfig.ready()).
    if "op_type" in properties and name.startswith("Register"):
        properties["op_type"]["enum"] = registry.names()
