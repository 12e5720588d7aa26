"""The admin site of the console: Django's, with its list of applications (the sidebar and the
index) ordered for an operator: the operations first, and the machinery (the task queue's own
tables, the API tokens) out of the way, at the end under "System" and for superusers only, without
"Add" links. Anyone with the permission still reaches them by their URL (an application's own
page lists it whole)."""

from django.contrib import admin
from django.http import HttpRequest

# Apps an operator does not work with, and what they are: the task queue's tables, the API tokens.
SYSTEM_APPS = {"background_task": "Task queue", "authtoken": "API tokens"}
FIRST_APPS = ("operations",)


def operator_app_list(app_list: list[dict], *, superuser: bool) -> list[dict]:
    """The operator's apps first (the rest in Django's order), then the System ones (superusers)."""
    work = sorted(
        (app for app in app_list if app["app_label"] not in SYSTEM_APPS),
        key=lambda app: app["app_label"] not in FIRST_APPS,
    )
    if not superuser:
        return work
    system = [
        {
            **app,
            "name": f"System \u00b7 {SYSTEM_APPS[app['app_label']]}",
            "models": [{**model, "add_url": None} for model in app["models"]],
        }
        for app in app_list
        if app["app_label"] in SYSTEM_APPS
    ]
    return [*work, *system]


class ConsoleSite(admin.AdminSite):
    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        app_list = super().get_app_list(request, app_label)
        if app_label is not None:
            return app_list
        return operator_app_list(app_list, superuser=request.user.is_superuser)
