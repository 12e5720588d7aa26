"""Shared fixtures: users and API clients, CSV files, and real `process_tasks` workers that
run against the test database (SQLite file or PostgreSQL, whichever the run uses)."""

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from operations.models import Operation, UploadedRow

ROOT = Path(__file__).resolve().parent.parent
HEADER = ["name", "phone", "email", "city"]


# --- data -----------------------------------------------------------------------------------


def csv_bytes(rows: int, *, header: list[str] = HEADER, start: int = 1, bom: bool = False) -> bytes:
    """A CSV file of `rows` well-formed data rows; row n's name is 'name<n>'."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for n in range(start, start + rows):
        writer.writerow([f"name{n}", f"+1555{n:07d}", f"user{n}@example.com", f"City {n % 97}"][: len(header)])
    data = out.getvalue().encode()
    return (b"\xef\xbb\xbf" + data) if bom else data


def upload_file(content: bytes, name: str = "data.csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type="text/csv")


def stored_lines(op_id: int) -> list[int]:
    return list(
        UploadedRow.objects.filter(operation_id=op_id).order_by("line_number").values_list("line_number", flat=True)
    )


def wait_for(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.02, what: str = ""):
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def op_in_state(op_id: int, *states: str) -> Operation | None:
    op = Operation.objects.get(pk=op_id)
    return op if op.state in states else None


# --- settings and clients -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Users are created with a password: hash it cheaply (the default costs ~0.5 s a user)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def media_root(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "media" / "incoming")
    os.makedirs(settings.FILE_UPLOAD_TEMP_DIR)
    return settings.MEDIA_ROOT


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-pw")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-pw")


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("root", password="root-pw", is_staff=True)


def token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(user) -> APIClient:
    """alice, authenticated with her token."""
    return token_client(user)


@pytest.fixture
def register(api) -> Callable[..., int]:
    def register(client: APIClient | None = None, **body) -> int:
        response = (client or api).post("/register/", body, format="json")
        assert response.status_code == 201, response.content
        return response.json()["op_id"]

    return register


@pytest.fixture
def start_upload(api, register) -> Callable[..., int]:
    """Register an Upload and start it with `content`; return the op_id."""

    def start(content: bytes, client: APIClient | None = None, **fields) -> int:
        op_id = register(client)
        response = (client or api).post("/upload/", {"op_id": op_id, "file": upload_file(content), **fields})
        assert response.status_code == 202, response.content
        return op_id

    return start


# --- real workers ---------------------------------------------------------------------------


def database_url() -> str:
    """The URL of the database this test run uses, for the worker subprocesses."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Workers:
    """Starts `manage.py process_tasks` subprocesses and cleans them up."""

    def __init__(self, *, media_root: Path, log_dir: Path):
        self.media_root = media_root
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []

    def start(self, *, chunk_delay: float = 0.0, lease_seconds: float = 3.0, **env) -> subprocess.Popen:
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
            "DATABASE_URL": database_url(),
            "LONG_TASK_MEDIA_ROOT": str(self.media_root),
            "LONG_TASK_LEASE_SECONDS": str(lease_seconds),
            "LONG_TASK_RECOVERY_SECONDS": "0.5",
            "LONG_TASK_TEST_CHUNK_DELAY": str(chunk_delay),
            "PYTHONUNBUFFERED": "1",
            **{key: str(value) for key, value in env.items()},
        }
        log = open(self.log_dir / f"worker-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "manage.py", "process_tasks", "--sleep", "0.05"],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        process.log_path = log.name
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        for process in self.processes:
            process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(Path(p.log_path).read_text(errors="replace")[-3000:] for p in self.processes)


@pytest.fixture
def workers(transactional_db, media_root, tmp_path, request):
    pool = Workers(media_root=media_root, log_dir=tmp_path)
    yield pool
    pool.stop_all()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(pool.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
