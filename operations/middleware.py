from django.http import JsonResponse
from django.urls import is_valid_path


class RejectNulBytesMiddleware:
    """A NUL byte in the query string, a cookie or a header is never valid input here, and
    PostgreSQL cannot compare text with one: answer 400 before anything looks it up."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        values = [request.META.get("QUERY_STRING", "")]
        values += [value for key, value in request.META.items() if key.startswith("HTTP_") and isinstance(value, str)]
        if any("\x00" in value or "%00" in value for value in values):
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
