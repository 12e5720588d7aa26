import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "long_task.settings")
application = get_wsgi_application()

# Everything loaded so far lives as long as the process: keep the garbage collector's full
# passes off it, which otherwise stall a request now and then for tens of milliseconds.
gc.freeze()
