from django.conf import settings
from django.http import JsonResponse
from django.urls import is_valid_path

from operations.storage import deadline


class RejectNulBytesMiddleware:
    """PostgreSQL cannot compare text with a NUL byte: answer 400 before anything looks up a
    value that has one. Only what is used is checked: the path, the query string (decoded or
    not), the credentials (Authorization, the session cookie) and the Content-Type; a NUL in an
    unrelated cookie, a Referer or a User-Agent harms nobody and is let through."""

    HEADERS = ("HTTP_AUTHORIZATION", "CONTENT_TYPE")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "")
        values = [request.path_info, *(request.META.get(name, "") for name in self.HEADERS)]
        values.append(request.COOKIES.get(settings.SESSION_COOKIE_NAME, ""))
        if "%00" in query or any("\x00" in value for value in [query, *values] if isinstance(value, str)):
            return JsonResponse({"message": "The request contains a NUL byte"}, status=400)
        return self.get_response(request)


class OptionalTrailingSlashMiddleware:
    """`POST /register` works like `POST /register/`. Clients (curl scripts above all) drop the
    slash, and Django's APPEND_SLASH can only redirect, which loses a POST's body (and in DEBUG
    is a 500). GET and HEAD keep APPEND_SLASH's redirect to the canonical URL."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        if request.method not in ("GET", "HEAD") and not path.endswith("/"):
            urlconf = getattr(request, "urlconf", None)
            if not is_valid_path(path, urlconf) and is_valid_path(f"{path}/", urlconf):
                request.path_info, request.path = f"{path}/", f"{request.path}/"
        return self.get_response(request)


class FileStoreDeadlineMiddleware:
    """The file store's calls in a request wait a bounded time and are not retried (a hung store
    must not hold a web thread for minutes): see operations/storage/deadline.py."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with deadline.web_request():
            return self.get_response(request)
