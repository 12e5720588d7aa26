"""Settings of the worker subprocesses that the tests start: the real ones plus a test app."""

from long_task.settings import *  # noqa: F403
from long_task.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.worker_hooks"]
