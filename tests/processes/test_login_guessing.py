"""Password guessing against the production web server of the Procfile (gunicorn, two worker
processes of eight threads): wrong passwords sent all at once are counted before their hash, in
the database that both processes share, so that no more than the limit are ever checked."""

import base64
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support import ROOT, free_port, port_open, procfile, procfile_environment, wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

LIMIT = 5
GUESSES = 30


@pytest.fixture
def gunicorn(media_root, tmp_path):
    """The Procfile's web line, run as a platform runs it, on the test database, with the
    deliberately slow default password hasher (so that guesses overlap inside the server)."""
    port = free_port()
    env = procfile_environment(
        port=port,
        media_root=media_root,
        LONG_TASK_THROTTLE_LOGIN_FAILURES=f"{LIMIT}/hour",
        LONG_TASK_THROTTLE_LOGIN_FAILURES_ADDRESS="1000/hour",
    )
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        web = subprocess.Popen(["sh", "-c", procfile()["web"]], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: port_open(port), timeout=30, what="gunicorn")
        wait_for(lambda: log_path.read_text().count("Booting worker") >= 2, timeout=30, what="its two workers")
        yield f"http://127.0.0.1:{port}"
    finally:
        web.terminate()
        web.wait(timeout=30)


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def test_parallel_wrong_passwords_check_at_most_the_limit(django_user_model, gunicorn, settings):
    """Thirty wrong passwords for one user, all at once: each 401 is a password the server
    checked; the others are refused before their hash, with the time to wait."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    django_user_model.objects.create_user("alice", password="alice-pw")

    def guess(n: int) -> httpx.Response:
        return httpx.get(f"{gunicorn}/api/operations/", headers=basic("alice", f"guess{n}"), timeout=120)

    with ThreadPoolExecutor(GUESSES) as pool:
        answers = list(pool.map(guess, range(GUESSES)))

    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) <= {401, 429}, statuses
    assert statuses.count(401) <= LIMIT, statuses
    assert statuses.count(429) >= GUESSES - LIMIT, statuses
    for answer in answers:
        if answer.status_code == 429:
            assert int(answer.headers["Retry-After"]) >= 1
            assert answer.json()["message"].startswith("Too many failed logins")
    # Even the right password now waits for the window to pass.
    assert httpx.get(f"{gunicorn}/api/operations/", headers=basic("alice", "alice-pw")).status_code == 429
