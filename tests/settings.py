"""Settings of the test run (pytest-django loads them before any conftest): the real ones, in
development mode. The variables are set in the environment, so that every subprocess the tests
start (workers, runserver, `manage.py run`, the CLI) inherits them."""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")

from long_task.settings import *  # noqa: E402, F403
