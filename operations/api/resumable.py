"""The tus 1.0 endpoints (SPEC §14): `/api/uploads/` (OPTIONS: what the server offers; POST:
create an upload) and `/api/uploads/<id>/` (HEAD: where it stands; PATCH: append a piece;
DELETE: drop it; GET: the same as HEAD, as JSON). Authenticated, throttled (`pieces`) and
CSRF-checked for sessions like the rest of the API; errors are JSON `{"message"}` with the
status tus gives them. The services are `operations.tus.services`.

Also: `start_files`, which lets a start or a resume take `upload=<id or URL>` of a finished
upload in place of a file.
"""

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from operations.errors import BadInput
from operations.tus import protocol
from operations.tus import services as tus
from operations.tus.models import ResumableUpload

# What a client that cannot send PATCH or DELETE (an old proxy) may send as a POST instead.
OVERRIDABLE = ("PATCH", "DELETE", "HEAD")


def _expires(upload: ResumableUpload) -> dict[str, str]:
    return {"Upload-Expires": protocol.expires(upload.expires_at)}


class TusEndpoint(APIView):
    throttle_scopes = ("pieces",)
    parser_classes = ()  # a piece's body is read as a stream, never parsed

    def dispatch(self, request, *args, **kwargs):
        override = request.headers.get("X-HTTP-Method-Override", "").upper()
        if request.method == "POST" and override in OVERRIDABLE:
            request.method = override
        return super().dispatch(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authenticated, allowed, throttled
        if request.method not in ("OPTIONS", "GET"):  # GET is ours (JSON), not the protocol's
            protocol.check_version(request.headers)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Tus-Resumable"] = protocol.VERSION
        response["Cache-Control"] = "no-store"
        if response.status_code == protocol.VersionMismatch.status_code:
            response["Tus-Version"] = protocol.VERSION
        if response.status_code == protocol.ChecksumMismatch.status_code:
            response.reason_phrase = "Checksum Mismatch"
        return response

    def options(self, request, *args, **kwargs):
        return Response(status=status.HTTP_204_NO_CONTENT, headers=protocol.server_headers())


@extend_schema(exclude=True)  # tus, not JSON: described in docs/api.md
class UploadsView(TusEndpoint):
    """Creation: POST with Upload-Length and Upload-Metadata (filename, base64)."""

    def post(self, request):
        if "Upload-Defer-Length" in request.headers:
            raise BadInput("Upload-Defer-Length is not offered: send Upload-Length")
        length = protocol.non_negative(request.headers, "Upload-Length")
        metadata = request.headers.get("Upload-Metadata", "")
        upload = tus.upload_create(user=request.user, length=length, metadata=metadata)
        # Location is a path, which tus clients resolve against the URL they posted to: right
        # behind a proxy that does not pass the Host the client used (as build_absolute_uri needs).
        location = reverse("resumable-upload", args=[upload.pk])
        headers = {"Location": location, "Upload-Offset": "0", **_expires(upload)}
        body = {"id": str(upload.pk), "url": request.build_absolute_uri(location)}
        return Response(body, status=status.HTTP_201_CREATED, headers=headers)


@extend_schema(exclude=True)
class UploadView(TusEndpoint):
    """One upload: HEAD (offset), PATCH (a piece), DELETE (termination), GET (JSON)."""

    def _state_headers(self, upload: ResumableUpload) -> dict[str, str]:
        headers = {"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length), **_expires(upload)}
        if upload.metadata:
            headers["Upload-Metadata"] = upload.metadata
        return headers

    def head(self, request, upload_id):
        upload = tus.upload_get(upload_id=upload_id, user=request.user)
        return Response(status=status.HTTP_200_OK, headers=self._state_headers(upload))

    def get(self, request, upload_id):
        upload = tus.upload_get(upload_id=upload_id, user=request.user)
        body = {
            "id": str(upload.pk),
            "file_name": upload.file_name,
            "offset": upload.offset,
            "length": upload.length,
            "finished": upload.finished,
            "sha256": upload.sha256,
            "expires_at": upload.expires_at,
        }
        return Response(body, headers=self._state_headers(upload))

    def patch(self, request, upload_id):
        django_request = request._request
        if django_request.content_type != protocol.PIECE_CONTENT_TYPE:
            raise protocol.UnsupportedMediaType()
        offset = protocol.non_negative(request.headers, "Upload-Offset")
        checksum = protocol.checksum(request.headers.get("Upload-Checksum"))
        content_length = request.META.get("CONTENT_LENGTH")
        upload = tus.upload_append(
            upload_id=upload_id,
            user=request.user,
            offset=offset,
            body=django_request,  # read in blocks as it arrives (HttpRequest.read)
            content_length=int(content_length) if content_length and content_length.isdigit() else None,
            checksum=checksum,
        )
        headers = {"Upload-Offset": str(upload.offset), **_expires(upload)}
        return Response(status=status.HTTP_204_NO_CONTENT, headers=headers)

    def delete(self, request, upload_id):
        tus.upload_delete(upload_id=upload_id, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
