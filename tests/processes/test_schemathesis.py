"""The schema against the live server: schemathesis generates requests from
/api/schema/ (examples, coverage, fuzzing, stateful sequences) and runs every check. No request
may get a server error, and every status must be one the schema documents for its action."""

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from tests.support import running_server

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

# Bounded: about a minute on a 2-core machine.
EXAMPLES_PER_OPERATION = 20
SEED = 2026
SERVER_ERROR = "ST101"
UNDOCUMENTED_STATUS = "ST103"
UNDOCUMENTED_CONTENT_TYPE = "ST105"


def test_schemathesis_finds_no_server_error_and_no_undocumented_status(user, media_root, tmp_path):
    token = Token.objects.get_or_create(user=user)[0].key
    report = tmp_path / "schemathesis.json"
    production = {  # as deployed: no debug pages (an unknown URL gets the JSON 404)
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        # A generated `wait_for_change` would hold each of its requests for the default 10 s:
        # most of the run's time, and near its timeout on a busy machine.
        "LONG_TASK_MAX_WAIT_SECONDS": "0.5",
    }
    with running_server(media_root=media_root, log_path=tmp_path / "web.log", **production) as (_, port):
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "run",
                f"http://127.0.0.1:{port}/api/schema/?format=json",
                "--header",
                f"Authorization: Token {token}",
                "--checks",
                "all",
                "--max-examples",
                str(EXAMPLES_PER_OPERATION),
                "--seed",
                str(SEED),
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--no-color",
                "--report",
                "json",
                "--report-json-path",
                str(report),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert report.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(report.read_text())
    failures = {failure["code"]: failure for failure in result["failures"]}
    print(
        f"schemathesis: {result['test_cases']['generated']} requests over {result['operations']['tested']} "
        f"operations in {result['running_time']:.0f} s; failures by check: "
        + (", ".join(f"{code} {f['title']}: {f['count']}" for code, f in sorted(failures.items())) or "none")
    )
    assert result["complete"] and result["operations"]["errored"] == 0, run.stdout[-3000:]
    assert result["test_cases"]["generated"] >= 300
    for code in (SERVER_ERROR, UNDOCUMENTED_STATUS, UNDOCUMENTED_CONTENT_TYPE):
        assert code not in failures, run.stdout[-6000:]
