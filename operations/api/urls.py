from django.contrib.auth.views import redirect_to_login
from django.urls import path, reverse
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.routers import SimpleRouter

from operations.api import results, resumable, seed, views, waiting


class JsonErrors:
    """Errors of the schema views as JSON, like everywhere else (not YAML or HTML)."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


class SchemaView(JsonErrors, SpectacularAPIView):
    pass


class DocsView(JsonErrors, SpectacularSwaggerView):
    """The interactive page. A browser that is not logged in is sent to the login page and back
    (a session, which "Try it out" then uses); an API client still gets the JSON 401."""

    def handle_exception(self, exc):
        not_logged_in = isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed)
        if not_logged_in and "text/html" in self.request.headers.get("Accept", ""):
            return redirect_to_login(self.request.get_full_path(), reverse("rest_framework:login"))
        return super().handle_exception(exc)


router = SimpleRouter(trailing_slash=True)
router.register("operations", views.OperationViewSet, basename="operation")

seed_urlpatterns = [
    path("register/", seed.RegisterView.as_view(), name="register"),
    path("upload/", seed.UploadView.as_view(), name="upload"),
    path("pause/", seed.PauseView.as_view(), name="pause"),
    path("resume/", seed.ResumeView.as_view(), name="resume"),
    path("terminate/", seed.TerminateView.as_view(), name="terminate"),
    path("get_status/", seed.StatusView.as_view(), name="get_status"),
]

api_urlpatterns = [
    # A stream: bounded per user, handed out without a thread (api/waiting.py).
    path("operations/<int:pk>/rows/", waiting.bounded(results.RowsView.as_view()), name="operation-rows"),
    *router.urls,
    # Resumable uploads (tus 1.0): api/resumable.py.
    path("uploads/", resumable.UploadsView.as_view(), name="resumable-uploads"),
    path("uploads/<uuid:upload_id>/", resumable.UploadView.as_view(), name="resumable-upload"),
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", DocsView.as_view(url_name="schema"), name="docs"),
]
