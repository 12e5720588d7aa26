"""The WSGI application loads at start-up what a first request would load: no request pays for
importing the views, DRF's classes or the session and message stores."""

import json
import os
import subprocess
import sys

from tests.support import ROOT, database_url

FIRST_REQUEST = """
import gc, io, json, sys
import long_task.wsgi as wsgi
modules, objects = set(sys.modules), len(gc.get_objects())
env = {"REQUEST_METHOD": "POST", "PATH_INFO": "/get_status/", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
       "wsgi.input": io.BytesIO(b'{"op_id": 1}'), "CONTENT_LENGTH": "12", "CONTENT_TYPE": "application/json",
       "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1", "wsgi.errors": sys.stderr}
statuses = []
b"".join(wsgi.application(env, lambda status, headers, exc=None: statuses.append(status)))
print(json.dumps({"status": statuses[0],
                  "new_modules": sorted(set(sys.modules) - modules), "new_objects": len(gc.get_objects()) - objects}))
"""


def test_a_first_request_imports_next_to_nothing():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()}
    result = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    first = json.loads(result.stdout.splitlines()[-1])
    assert first["status"].startswith("401")  # no credentials: through the middleware, DRF and the view
    # Without the loading at start-up: ~430 modules (DRF, the views, the schema) and ~37,000 objects.
    assert len(first["new_modules"]) <= 5, first["new_modules"]
    assert first["new_objects"] < 2_000
