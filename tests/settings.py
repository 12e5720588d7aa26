"""Settings of the test run (pytest-django loads them before any conftest): the real ones, in
development mode. The variables are set in the environment, so that every subprocess the tests
start (workers, runserver, `manage.py run`, the CLI) inherits them."""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")
# Tests make many requests quickly: limits far above them (tests/api/test_throttling.py sets low ones).
for name in (
    "ANONYMOUS",
    "WRITES",
    "UPLOADS",
    "READS",
    "LOGIN_FAILURES",
    "LOGIN_FAILURES_ADDRESS",
):
    os.environ.setdefault(f"LONG_TASK_THROTTLE_{name}", "100000/minute")
os.environ.setdefault("LONG_TASK_MAX_REGISTERED", "100000")

from long_task.settings import *  # noqa: E402, F403
