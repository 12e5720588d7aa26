"""The seed-compatible endpoints (SPEC §5): /register/ /upload/ /pause/ /resume/ /terminate/
/get_status/, each one of the command functions of views.py, which the REST API shares."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers
from rest_framework.views import APIView

from operations import uploads
from operations.api import parsing, waiting
from operations.api.serializers import MessageSerializer, OperationSerializer, RegisterSerializer
from operations.api.views import (
    IF_NONE_MATCH,
    LINES_FIELD,
    STRICT_FIELD,
    UPLOAD_FIELD,
    WAIT_FOR_CHANGE,
    BinaryFileField,
    pause_operation,
    register_operation,
    resume_operation,
    start_operation,
    status_of_operation,
    terminate_operation,
)


class SeedEndpoint(APIView):
    command = None  # one of the command functions above
    http_method_names = ["post", "options"]
    throttle_scopes = ("writes",)  # see api/throttling.py
    accepts_files = False  # a file part is refused before it is read (see uploads.take_files)

    def initial(self, request, *args, **kwargs):
        if self.accepts_files:  # read once the caller is authenticated, within its quotas
            uploads.take_files(request._request)
        super().initial(request, *args, **kwargs)

    def post(self, request):
        data = parsing.body(request)
        return type(self).command(request, parsing.op_id(data), data)


REGISTERED = inline_serializer(
    "Registered",
    {"op_id": serializers.IntegerField(), "op_type": serializers.CharField(), "state": serializers.CharField()},
)


class RegisterView(SeedEndpoint):
    @extend_schema(request=RegisterSerializer, responses={201: REGISTERED, 400: MessageSerializer})
    def post(self, request):
        return register_operation(request, parsing.body(request))


def _seed_schema(name: str, description: str, fields: dict, ok: int, *, multipart: bool = False):
    body = inline_serializer(f"{name}Body", {"op_id": serializers.IntegerField(), **fields})
    return extend_schema_view(
        post=extend_schema(
            description=description,
            request={"multipart/form-data": body} if multipart else body,
            responses={ok: OperationSerializer, 400: MessageSerializer, 404: MessageSerializer, 409: MessageSerializer},
        )
    )


@_seed_schema(
    "Upload",
    "Upload: start a registered upload with its file, or resume a paused one.",
    {
        "file": BinaryFileField(required=False),
        "upload": UPLOAD_FIELD,
        "lines": LINES_FIELD,
        "strict": STRICT_FIELD,
    },
    202,
    multipart=True,
)
class UploadView(SeedEndpoint):
    command = start_operation
    throttle_scopes = ("writes", "uploads")
    accepts_files = True

    def post(self, request):
        # `op_id` may come in the query string too, where a refusal before the body can read it.
        data = parsing.body_of_start(request, op_id=parsing.optional_id(request.query_params, "op_id"))
        return start_operation(request, parsing.op_id(data), data)


@_seed_schema("Pause", "Pause: stop at the next chunk boundary.", {"wait": serializers.FloatField(required=False)}, 200)
class PauseView(SeedEndpoint):
    command = pause_operation


@_seed_schema("Resume", "Resume: continue from the checkpoint.", {}, 202)
class ResumeView(SeedEndpoint):
    command = resume_operation
    accepts_files = True  # a re-sent file, compared with the stored one


@_seed_schema(
    "Terminate",
    "Terminate: roll back everything the operation wrote.",
    {"force": serializers.BooleanField(required=False), "wait": serializers.FloatField(required=False)},
    200,
)
class TerminateView(SeedEndpoint):
    command = terminate_operation


@extend_schema_view(
    get=extend_schema(
        description="Status of an operation, with an ETag.",
        parameters=[OpenApiParameter("op_id", int, required=True), WAIT_FOR_CHANGE, IF_NONE_MATCH],
        responses={200: OperationSerializer, 304: None, 404: MessageSerializer},
    )
)
@_seed_schema(
    "Status", "Status of an operation, with an ETag.", {"wait_for_change": serializers.FloatField(required=False)}, 200
)
class StatusView(SeedEndpoint):
    command = status_of_operation
    http_method_names = ["get", "post", "options"]
    throttle_scopes = ("reads",)

    @classmethod
    def as_view(cls, **initkwargs):
        return waiting.bounded(super().as_view(**initkwargs))  # a long poll waits without a thread

    def get(self, request):
        return self.post(request)
