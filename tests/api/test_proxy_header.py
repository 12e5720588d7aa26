"""X-Forwarded-Proto is trusted only when a proxy is said to set it: without one, a client that
sends `X-Forwarded-Proto: https` over plain HTTP must still be redirected to HTTPS."""

import os
import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import django; django.setup()
from django.test import Client
response = Client(HTTP_HOST="localhost").get("/", HTTP_X_FORWARDED_PROTO="https")
print(response.status_code, response.get("Location", ""))
"""


def probe(tmp_path, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    environment.update(
        DJANGO_SETTINGS_MODULE="long_task.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="k" * 50,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db'}",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def forged_https(tmp_path, **env: str) -> str:
    """The answer of the production settings (DJANGO_DEBUG=0) to a plain-HTTP request that
    claims to have come through a TLS proxy."""
    answered = probe(tmp_path, **env)
    assert answered.returncode == 0, answered.stderr
    return answered.stdout.strip()


def test_without_a_proxy_a_forged_header_is_still_redirected(tmp_path):
    assert forged_https(tmp_path) == "301 https://localhost/"


def test_behind_a_proxy_its_header_says_https(tmp_path):
    assert forged_https(tmp_path, DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto") == "200"
    # A proxy that names the scheme in another header.
    assert forged_https(tmp_path, DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Scheme") == "301 https://localhost/"


def test_a_setting_that_is_no_header_name_refuses_to_start(tmp_path):
    started = probe(tmp_path, DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https")
    assert started.returncode != 0
    assert "DJANGO_SECURE_PROXY_SSL_HEADER must be a header name" in started.stderr
