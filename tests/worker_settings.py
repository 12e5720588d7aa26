"""Settings of the worker subprocesses that the tests start: the real ones plus a test app."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.worker_hooks"]
