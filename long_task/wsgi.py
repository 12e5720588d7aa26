import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "long_task.settings")
application = get_wsgi_application()


def _load_what_requests_load() -> None:
    """What Django and DRF would otherwise import on a process's first request: every view
    module (through the URLconf), DRF's configured classes, the session and message stores.
    That first request then takes a few milliseconds, not 250, and what they load is frozen
    below with the rest."""
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
# Everything loaded so far lives as long as the process: keep the garbage collector's full
# passes off it, which otherwise stall a request now and then for tens of milliseconds (10 ms
# on an idle machine with the views unfrozen, 30 ms under an import).
gc.freeze()
