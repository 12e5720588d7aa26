from django.http import JsonResponse


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
