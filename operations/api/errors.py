"""One exception handler: every error leaves as JSON {"message": ...} with a 4xx status."""

import logging
import math

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from operations.errors import OperationError

logger = logging.getLogger(__name__)


def _message(detail) -> str:
    """Flatten DRF's error detail (a string, list or dict) into one readable sentence."""
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_message(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_message(item) for item in detail)
    return str(detail)


def exception_handler(exc, context) -> Response | None:
    headers, extra = {}, {}
    if isinstance(exc, OperationError):
        code, message = exc.status_code, exc.message
        if exc.hint:
            extra["hint"] = exc.hint
        if getattr(exc, "retry_after", None):
            headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, exceptions.APIException):
        code, message = exc.status_code, _message(exc.detail)
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None) is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
    elif isinstance(exc, Http404):
        code, message = status.HTTP_404_NOT_FOUND, "Not found"
    elif isinstance(exc, PermissionDenied):
        code, message = status.HTTP_403_FORBIDDEN, "You do not have permission to perform this action."
    elif isinstance(exc, RequestDataTooBig):
        code, message = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "The request body is too large"
    elif isinstance(exc, SuspiciousOperation):
        code, message = status.HTTP_400_BAD_REQUEST, "The request could not be read"
    else:
        return None  # a bug: Django logs it and answers 500 (see json_server_error)
    set_rollback()
    return Response({"message": message, **extra}, status=code, headers=headers)


def json_bad_request(request, exception=None) -> JsonResponse:
    return JsonResponse({"message": "Bad request"}, status=400)


def json_forbidden(request, exception=None) -> JsonResponse:
    return JsonResponse({"message": "Forbidden"}, status=403)


def json_not_found(request, exception=None) -> JsonResponse:
    return JsonResponse({"message": "Not found"}, status=404)


def json_server_error(request) -> JsonResponse:
    return JsonResponse({"message": "Internal server error"}, status=500)
