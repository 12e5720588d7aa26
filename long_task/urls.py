from django.contrib import admin
from django.urls import include, path

from operations.admin.dashboard import DashboardLiveView, front_page
from operations.api.urls import api_urlpatterns, seed_urlpatterns

urlpatterns = [
    # The front door: where to go (the admin console, the API docs); the dashboard once logged in.
    path("", front_page, name="home"),
    path("dashboard/live/", DashboardLiveView.as_view(), name="dashboard-live"),
    path("admin/", admin.site.urls),
    path("api/", include(api_urlpatterns)),
    path("api/auth/", include("rest_framework.urls")),
    *seed_urlpatterns,
]

handler400 = "operations.api.errors.json_bad_request"
handler403 = "operations.api.errors.json_forbidden"
handler404 = "operations.api.errors.json_not_found"
handler500 = "operations.api.errors.json_server_error"
