from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer
from rest_framework.routers import SimpleRouter

from operations.api import results, views


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
    pass


router = SimpleRouter(trailing_slash=True)
router.register("operations", views.OperationViewSet, basename="operation")

seed_urlpatterns = [
    path("register/", views.RegisterView.as_view(), name="register"),
    path("upload/", views.UploadView.as_view(), name="upload"),
    path("pause/", views.PauseView.as_view(), name="pause"),
    path("resume/", views.ResumeView.as_view(), name="resume"),
    path("terminate/", views.TerminateView.as_view(), name="terminate"),
    path("get_status/", views.StatusView.as_view(), name="get_status"),
]

api_urlpatterns = [
    path("operations/<int:pk>/rows/", results.RowsView.as_view(), name="operation-rows"),
    *router.urls,
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", DocsView.as_view(url_name="schema"), name="docs"),
]
