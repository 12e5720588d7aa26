"""Results out over HTTP (SPEC §6): an operation's rows as keyset pages or as one CSV or JSON-lines
stream, and its row errors as a stream. Reading and encoding live in operations/results.py.

`GET /api/operations/{id}/rows/`
    `?after=<line>&limit=N` (default 0 and 100, at most 1000): `{"results": [{"line_number",
    "data"}...], "next": <url of the next page> or null}`; the same cost at any depth.
    `?format=csv` (the original header, then the values in header order) or `?format=jsonl`
    (one `{"line_number", "data"}` object a line): every stored row in line order, streamed a
    page at a time; `after` and `limit` select a part (to resume a broken download, say).
`GET /api/operations/{id}/row-errors/?format=csv|jsonl`
    Every row error (line_number, reason, raw), streamed the same way. Without `format` the
    endpoint keeps its paginated JSON list. The CSV is a report for spreadsheets: every value
    quoted, and a `'` before a cell that starts with `=`, `+`, `-`, `@`, a tab or a CR (so that
    no rejected row runs as a formula); the JSON lines keep the raw text as it was.

What a stream contains is what is committed while it is read (CSV: up to the last line stored
when the stream starts): for a completed import, every accepted row. CSV is written by the
Export type's encoder (rowstore.export_csv), so it reads like an Export's file: the user's own
values byte for byte, a value that starts like a formula included.
"""

from collections.abc import Iterator, Mapping

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from operations import results, selectors, targets
from operations.api import parsing
from operations.api.serializers import MessageSerializer, RowErrorSerializer
from operations.errors import BadInput
from operations.models import Operation
from operations.params import bounded_integer

PAGE_ROWS = 100
MAX_PAGE_ROWS = 1000
STREAM_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
FORMATS = ["json", *STREAM_TYPES]


def visible_operation(request, op_id) -> Operation:
    """The operation if the caller may see it, else 404 "Operation ID Invalid" (SPEC §8): the
    one call of the visibility rule in this module."""
    return selectors.operation_get(op_id=parsing.op_id({"op_id": op_id}), user=request.user)


class FormatParameterNegotiation(DefaultContentNegotiation):
    """Here `?format=` names the download (json, csv or jsonl, checked by the view: 400 when
    unknown), not one of DRF's renderers (which would answer 404 for csv); and a download is
    served whatever the Accept header says (errors then come as JSON)."""

    class settings:  # noqa: N801 (DRF reads `self.settings.URL_FORMAT_OVERRIDE`)
        URL_FORMAT_OVERRIDE = None

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type


# --- parameters -------------------------------------------------------------------------------


def _format(params: Mapping) -> str:
    fmt = params.get("format") or "json"
    if fmt not in FORMATS:
        raise BadInput(f"format must be one of: {', '.join(FORMATS)}")
    return fmt


def _whole_number(params: Mapping, name: str, *, default: int | None, minimum: int, message: str) -> int | None:
    if name not in params:
        return default
    return bounded_integer(params[name], minimum=minimum, message=message)


def _after(params: Mapping) -> int:
    return _whole_number(params, "after", default=0, minimum=0, message="after must be a line number (0 or more)")


def _stream_limit(params: Mapping) -> int | None:
    return _whole_number(params, "limit", default=None, minimum=1, message="limit must be a positive integer")


def _page_limit(params: Mapping) -> int:
    message = f"limit must be an integer from 1 to {MAX_PAGE_ROWS}"
    limit = _whole_number(params, "limit", default=PAGE_ROWS, minimum=1, message=message)
    if limit > MAX_PAGE_ROWS:
        raise BadInput(message)
    return limit


def _stream(chunks: Iterator[bytes], *, fmt: str, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=STREAM_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    return response


# --- schema -----------------------------------------------------------------------------------

FORMAT_PARAMETER = OpenApiParameter(
    "format", str, enum=FORMATS, description="json (pages, the default), or csv / jsonl: one stream of everything"
)
AFTER_PARAMETER = OpenApiParameter("after", int, description="Only lines after this one (default 0).")
LIMIT_PARAMETER = OpenApiParameter(
    "limit",
    int,
    description=f"Rows in a page (default {PAGE_ROWS}, at most {MAX_PAGE_ROWS}); in a stream, at most this many.",
)
ROW_PAGE = inline_serializer(
    "RowPage",
    {
        "results": inline_serializer(
            "Row", {"line_number": serializers.IntegerField(), "data": serializers.DictField()}, many=True
        ),
        "next": serializers.URLField(allow_null=True, help_text="The next page, or null at the end."),
    },
)
ERRORS = {400: MessageSerializer, 404: MessageSerializer}
STREAMS = {(200, "text/csv"): OpenApiTypes.STR, (200, "application/x-ndjson"): OpenApiTypes.STR}

# For the row-errors action of the OperationViewSet (views.py).
ROW_ERRORS_SCHEMA = {
    "description": "Row errors of an operation: paginated JSON, or with format=csv or jsonl every one as a stream.",
    "parameters": [
        FORMAT_PARAMETER,
        OpenApiParameter("after", int, description="With format=csv or jsonl: only lines after this one."),
        OpenApiParameter("limit", int, description="With format=csv or jsonl: at most this many."),
    ],
    "responses": {
        (200, "application/json"): RowErrorSerializer(many=True),
        **STREAMS,
        **ERRORS,
    },
}


# --- views --------------------------------------------------------------------------------------


class RowsView(APIView):
    content_negotiation_class = FormatParameterNegotiation
    throttle_scopes = ("reads",)  # see api/throttling.py

    @extend_schema(
        operation_id="operations_rows",
        description="The stored rows of an operation in line order: keyset pages, or one CSV or JSON-lines stream.",
        parameters=[
            OpenApiParameter("id", int, OpenApiParameter.PATH),
            FORMAT_PARAMETER,
            AFTER_PARAMETER,
            LIMIT_PARAMETER,
        ],
        responses={(200, "application/json"): ROW_PAGE, **STREAMS, **ERRORS},
    )
    def get(self, request, pk: int):
        op = visible_operation(request, pk)
        params = request.query_params
        fmt, after = _format(params), _after(params)
        # An import into a target's table reads back from there, typed, under the mapped header.
        imported = targets.imported_rows(op)
        columns = op.columns if imported is None else imported.header
        if fmt != "json":
            limit = _stream_limit(params)
            if imported is not None:
                chunks = imported.export(fmt=fmt, after=after, limit=limit)
            else:
                chunks = results.rows_export(operation_id=op.pk, columns=columns, fmt=fmt, after=after, limit=limit)
            return _stream(chunks, fmt=fmt, filename=f"operation-{op.pk}-rows")
        limit = _page_limit(params)
        # One row more than the page says whether there is a next one, at no extra query.
        if imported is None:
            page = results.rows_after(operation_id=op.pk, after=after, limit=limit + 1)
        else:
            page = imported.rows_after(after=after, limit=limit + 1)
        next_url = None
        if len(page) > limit:
            page = page[:limit]
            next_url = replace_query_param(request.build_absolute_uri(), "after", page[-1][0])
        return Response(
            {
                "results": [{"line_number": line, "data": results.ordered(data, columns)} for line, data in page],
                "next": next_url,
            }
        )


def row_errors_download(request, op: Operation) -> StreamingHttpResponse | None:
    """`/row-errors/?format=csv|jsonl`: every row error as one stream; None for the JSON list,
    which is paginated by `page` (so `after` and `limit` are refused there, not ignored)."""
    params = request.query_params
    fmt = _format(params)
    if fmt == "json":
        if "after" in params or "limit" in params:
            raise BadInput("after and limit go with format=csv or format=jsonl; the JSON list is paged by page")
        return None
    chunks = results.row_errors_export(operation_id=op.pk, fmt=fmt, after=_after(params), limit=_stream_limit(params))
    return _stream(chunks, fmt=fmt, filename=f"operation-{op.pk}-row-errors")
