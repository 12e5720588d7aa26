"""The HTTP interface: the command functions of the seed-compatible endpoints (SPEC §5, whose
views are in seed.py) and the REST API (§6).

Views only parse, call a service or a selector and serialize. Both interfaces share the command
functions below, so they follow the same rules and give the same messages.
"""

import functools
from collections.abc import Mapping

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from operations import access, params, selectors, services, storage, uploads
from operations.api import parsing, results, waiting
from operations.api.serializers import (
    EventSerializer,
    MessageSerializer,
    OperationListSerializer,
    OperationSerializer,
    RegisterSerializer,
    RowErrorSerializer,
)
from operations.errors import BadInput, Conflict, Forbidden
from operations.models import Operation
from operations.operation_types import registry
from operations.state_machine import Actor
from operations.tus import starting

State = Operation.State
# What a download hands the server at a time (FileResponse's default is 4 KiB).
DOWNLOAD_BLOCK_BYTES = 256 * 1024


@extend_schema_field(OpenApiTypes.BINARY)
class BinaryFileField(serializers.FileField):
    """A file in a multipart body, typed `format: binary` in the schema, so that Swagger's "Try
    it out" offers a file chooser and generated clients send bytes (not a URI string)."""


# The optional fields of a start, with their defaults in the schema: Swagger's "Try it out" fills
# a form field from its default (or else a sample: 0, true), and a sample would be sent.
LINES_FIELD = serializers.IntegerField(
    required=False, allow_null=True, default=None, help_text="On a resume: must equal lines_finished."
)
STRICT_FIELD = serializers.BooleanField(required=False, default=False, help_text="Fail at the first bad CSV row.")
UPLOAD_FIELD = serializers.CharField(
    required=False,
    allow_blank=True,
    default="",
    help_text="In place of file: the id or URL of a finished resumable upload (tus, /api/uploads/).",
)


def _status(op: Operation) -> dict:
    return selectors.operation_status(op)


# --- Commands shared by both interfaces ---------------------------------------------------


def _register(request, data: Mapping) -> Operation:
    op_type = params.text(data, "op_type", default="Upload")
    return services.operation_register(op_type=op_type, actor=Actor.for_user(request.user), data=data)


def register_operation(request, data: Mapping) -> Response:
    op = _register(request, data)
    return Response({"op_id": op.pk, "op_type": op.op_type, "state": op.state}, status=status.HTTP_201_CREATED)


def start_operation(request, op_id: int, data: Mapping) -> Response:
    """Start a registered operation with its input, or resume a paused or failed one."""
    with starting.start_files(request, data) as files:
        op, resumed = services.operation_start(op_id=op_id, actor=Actor.for_user(request.user), data=data, files=files)
    message = f"{op.op_type.lower()} {'resumed' if resumed else 'started'}"
    return Response({"message": message, **_status(op)}, status=status.HTTP_202_ACCEPTED)


def pause_operation(request, op_id: int, data: Mapping) -> Response:
    wait = params.seconds(data, "wait")
    op = services.operation_pause(op_id=op_id, actor=Actor.for_user(request.user))
    op = selectors.operation_wait(op, until={State.PAUSED}, seconds=wait)
    return Response({"success": True, **_status(op)})


def resume_operation(request, op_id: int, data: Mapping) -> Response:
    """`lines`, a re-sent file and `strict` mean the same on /resume/ as on /upload/."""
    with starting.start_files(request, data) as files:
        op = services.operation_resume(op_id=op_id, actor=Actor.for_user(request.user), data=data, files=files)
    return Response({"success": True, **_status(op)}, status=status.HTTP_202_ACCEPTED)


def terminate_operation(request, op_id: int, data: Mapping) -> Response:
    force = params.flag(data, "force")
    wait = params.seconds(data, "wait")
    op = services.operation_terminate(op_id=op_id, actor=Actor.for_user(request.user), force=force)
    op = selectors.operation_wait(op, until={State.TERMINATED}, seconds=wait)
    return Response({"success": True, **_status(op)})


def status_of_operation(request, op_id: int, data: Mapping) -> Response:
    """The status with its ETag: 304 when it matches If-None-Match. With `wait_for_change`, the
    answer waits (bounded) until the status differs from If-None-Match's version, or from the
    one at the time of the request: the view is then a PendingChange, which the async view
    around it (waiting.bounded) waits for without a thread."""
    known = request.headers.get("If-None-Match")
    seconds = selectors.wait_seconds(params.seconds(data, "wait_for_change"))
    op = selectors.operation_get(op_id=op_id, user=request.user)
    etag = known or selectors.status_etag(op)
    if seconds and selectors.status_etag(op) == etag:
        answer = functools.partial(_status_response, known=known)
        return waiting.PendingChange(request, op=op, etag=etag, seconds=seconds, answer=answer)
    return _status_response(op, known=known)


def _status_response(op: Operation, *, known: str | None) -> Response:
    etag = selectors.status_etag(op)
    if known == etag:
        return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return Response(_status(op), headers={"ETag": etag})


# --- Seed-compatible endpoints: POST, op_id in the body -------------------------------------


WAIT_FOR_CHANGE = OpenApiParameter(
    "wait_for_change",
    float,
    description="Seconds (at most LONG_TASK_MAX_WAIT_SECONDS) to wait for the status to change from "
    "the If-None-Match version, or from the one at the time of the request.",
)
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match", str, OpenApiParameter.HEADER, description="An ETag of this status: 304 while it still matches."
)


# --- REST API under /api/ -------------------------------------------------------------------

STATE_FILTER = OpenApiParameter("state", str, enum=[choice for choice, _ in State.choices])
TYPE_FILTER = OpenApiParameter("op_type", str)


class OperationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Operations the caller may see (its own; everyone's with a permission, see `access`)."""

    serializer_class = OperationSerializer
    lookup_value_regex = r"[0-9]+"
    throttle_scopes_by_action = {
        "list": ("reads",),
        "retrieve": ("reads",),
        "events": ("reads",),
        "row_errors": ("reads",),
        "download": ("reads",),
        "create": ("writes",),
        "start": ("writes", "uploads"),
        "pause": ("writes",),
        "resume": ("writes",),
        "terminate": ("writes",),
    }
    file_actions = ("start", "resume")  # see uploads.take_files
    # Long polls and streams: bounded per user, and waiting without a thread (api/waiting.py).
    bounded_actions = ("retrieve", "row_errors", "download")

    @classmethod
    def as_view(cls, actions=None, **initkwargs):
        view = super().as_view(actions, **initkwargs)
        return waiting.bounded(view) if set((actions or {}).values()) & set(cls.bounded_actions) else view

    def initial(self, request, *args, **kwargs):
        if self.action in self.file_actions:
            uploads.take_files(request._request)
        super().initial(request, *args, **kwargs)

    def get_queryset(self):
        queryset = Operation.objects.visible_to(self.request.user)
        params = self.request.query_params
        if "state" in params:
            if params["state"] not in State.values:
                raise BadInput(f"state must be one of: {', '.join(State.values)}")
            queryset = queryset.filter(state=params["state"])
        if "op_type" in params:
            if params["op_type"] not in registry.names():
                return queryset.none()
            queryset = queryset.filter(op_type=params["op_type"])
        return queryset

    def _op_id(self) -> int:
        return parsing.op_id({"op_id": self.kwargs["pk"]})

    def get_serializer_class(self):
        return OperationListSerializer if self.action == "list" else OperationSerializer

    @extend_schema(parameters=[STATE_FILTER, TYPE_FILTER])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=RegisterSerializer, responses={201: OperationSerializer})
    def create(self, request):
        op = _register(request, parsing.body(request))
        return Response(_status(op), status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[WAIT_FOR_CHANGE, IF_NONE_MATCH],
        responses={200: OperationSerializer, 304: None, 404: MessageSerializer},
    )
    def retrieve(self, request, pk=None):
        return status_of_operation(request, self._op_id(), request.query_params)

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "StartInput",
                {
                    "file": BinaryFileField(required=False),
                    "upload": UPLOAD_FIELD,
                    "lines": LINES_FIELD,
                    "strict": STRICT_FIELD,
                },
            )
        },
        responses={202: OperationSerializer},
    )
    @action(detail=True, methods=["post"], url_path="start")
    def start(self, request, pk=None):
        op_id = self._op_id()
        return start_operation(request, op_id, parsing.body_of_start(request, op_id=op_id))

    @extend_schema(
        request=None,
        responses={200: OperationSerializer},
        parameters=[OpenApiParameter("wait", float, description="Seconds to wait for the ack")],
    )
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return pause_operation(request, self._op_id(), parsing.body(request))

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return resume_operation(request, self._op_id(), parsing.body(request))

    @extend_schema(
        request=None,
        responses={200: OperationSerializer},
        parameters=[OpenApiParameter("force", bool), OpenApiParameter("wait", float)],
    )
    @action(detail=True, methods=["post"])
    def terminate(self, request, pk=None):
        return terminate_operation(request, self._op_id(), parsing.body(request))

    @extend_schema(
        request=None,
        description="Import what a completed dry run (`dry_run=true`) checked, from the file it stored: "
        "the file is not sent again. Creates and queues a new operation with the dry run's options; the "
        "stored file belongs to it from then on (the dry run keeps its verdicts, and names the import in "
        "`dry_run.import_operation`). 409 if the operation is not a completed dry run, was imported already, "
        "or its file is past its retention.",
        responses={201: OperationSerializer, **dict.fromkeys((400, 404, 409), MessageSerializer)},
    )
    @action(detail=True, methods=["post"], url_path="import")
    def import_checked(self, request, pk=None):
        unknown = sorted(set(parsing.body(request)) - {"csrfmiddlewaretoken"})
        if unknown:
            raise BadInput(f"import takes no parameters (it imports with the dry run's options): {', '.join(unknown)}")
        op = services.operation_import(op_id=self._op_id(), actor=Actor.for_user(request.user))
        return Response(_status(op), status=status.HTTP_201_CREATED)

    @extend_schema(responses=EventSerializer(many=True))
    @action(detail=True, methods=["get"])
    def events(self, request, pk=None):
        op = selectors.operation_get(op_id=self._op_id(), user=request.user)
        return self._page(op.events.all(), EventSerializer)

    @extend_schema(**results.ROW_ERRORS_SCHEMA)
    @action(
        detail=True,
        methods=["get"],
        url_path="row-errors",
        content_negotiation_class=results.FormatParameterNegotiation,
    )
    def row_errors(self, request, pk=None):
        op = selectors.operation_get(op_id=self._op_id(), user=request.user)
        download = results.row_errors_download(request, op)  # ?format=csv|jsonl
        return download if download is not None else self._page(op.row_errors.all(), RowErrorSerializer)

    @extend_schema(
        description="The operation's file: an Export's result once completed, an Upload's input while stored. "
        "For its owner only (403 for anyone else who may see the operation).",
        responses={(200, "text/csv"): OpenApiTypes.BINARY, **dict.fromkeys((403, 404, 409), MessageSerializer)},
    )
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        op = selectors.operation_get(op_id=self._op_id(), user=request.user)
        if not access.can_download(request.user, op):
            raise Forbidden("You may see this operation but not download its file")
        refusal = selectors.download_refusal(op)
        if refusal:
            raise Conflict(refusal)
        # Streamed from the store (S3: ranged GETs of a block each), never read whole.
        stored = storage.open_for_reading(op.file.name)
        name = op.file_name or op.file.name.rsplit("/", 1)[-1]
        response = FileResponse(stored, as_attachment=True, filename=name, content_type="text/csv")
        response.block_size = DOWNLOAD_BLOCK_BYTES
        return response

    def _page(self, queryset, serializer_class) -> Response:
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True).data)
