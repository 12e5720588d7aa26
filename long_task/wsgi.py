import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "long_task.settings")
application = get_wsgi_application()


def _load_what_requests_load() -> None:
    """What Django and DRF would otherwise import on a process's first request: every view
    module (through the URLconf), DRF's configured classes, the session and message stores.
    A process's first request then costs what the others do."""
    from importlib import import_module

    from django.conf import settings
    from django.urls import reverse
    from django.utils.module_loading import import_string
    from rest_framework.settings import api_settings

    reverse("get_status")  # imports every view module and builds the URL resolver's tables
    for name in api_settings.import_strings:
        getattr(api_settings, name)
    import_module(settings.SESSION_ENGINE)
    import_string(settings.MESSAGE_STORAGE)


_load_what_requests_load()
